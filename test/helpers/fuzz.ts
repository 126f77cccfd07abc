/**
 * fast-check parameters for the fuzz targets. In the suite they run a fixed, small number of cases (seeded where
 * the test says so); `npm run fuzz -- TARGET --runs N` (scripts/fuzz.mjs) sets TYPEVISOR_FUZZ_RUNS for a longer
 * campaign with a fresh seed each time (TYPEVISOR_FUZZ_SEED replays one; fast-check prints the seed and the
 * shrunk counterexample of a failure).
 */
export function fuzzParams(numRuns: number, seed?: number): { numRuns: number; seed?: number } {
  const runs = Number(process.env.TYPEVISOR_FUZZ_RUNS);
  if (!Number.isInteger(runs) || runs <= 0) return seed === undefined ? { numRuns } : { numRuns, seed };
  const replay = Number(process.env.TYPEVISOR_FUZZ_SEED);
  if (Number.isInteger(replay)) return { numRuns: runs, seed: replay };
  // A fresh seed, chosen here rather than by fast-check so a passing campaign can record it (and replay it).
  const fresh = Math.floor(Math.random() * 2 ** 31);
  console.log(`fuzz seed ${fresh} (${runs} runs)`);
  return { numRuns: runs, seed: fresh };
}
