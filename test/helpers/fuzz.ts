/**
 * fast-check parameters for the fuzz targets. In the suite they run a fixed, small number of cases (seeded where
 * the test says so); `npm run fuzz -- TARGET --runs N` (scripts/fuzz.mjs) sets TYPEVISOR_FUZZ_RUNS for a longer
 * campaign with a fresh seed each time (TYPEVISOR_FUZZ_SEED replays one; fast-check prints the seed and the
 * shrunk counterexample of a failure). TYPEVISOR_FUZZ_SECONDS bounds each property of a campaign in time: it
 * stops there (a pass, when nothing failed) and reports how many cases it ran, so a campaign on a loaded machine
 * records an exact count rather than none.
 */
import fc from 'fast-check';

/** The fields of fast-check's RunDetails<Ts> the reporter reads (RunDetails itself is invariant in Ts). */
interface RunSummary {
  numRuns: number;
  interrupted: boolean;
  failed: boolean;
  errorInstance: unknown;
}

export interface FuzzParams {
  numRuns: number;
  seed?: number;
  interruptAfterTimeLimit?: number;
  markInterruptAsFailure?: boolean;
  reporter?: (out: RunSummary) => void;
}

export function fuzzParams(numRuns: number, seed?: number): FuzzParams {
  const runs = Number(process.env.TYPEVISOR_FUZZ_RUNS);
  if (!Number.isInteger(runs) || runs <= 0) return seed === undefined ? { numRuns } : { numRuns, seed };
  const replay = Number(process.env.TYPEVISOR_FUZZ_SEED);
  // A fresh seed, chosen here rather than by fast-check so a passing campaign can record it (and replay it).
  const chosen = Number.isInteger(replay) ? replay : Math.floor(Math.random() * 2 ** 31);
  console.log(`fuzz seed ${chosen} (${runs} runs)`);
  const params: FuzzParams = { numRuns: runs, seed: chosen, reporter: report };
  const seconds = Number(process.env.TYPEVISOR_FUZZ_SECONDS);
  if (Number.isFinite(seconds) && seconds > 0) {
    params.interruptAfterTimeLimit = seconds * 1000;
    params.markInterruptAsFailure = false;
  }
  return params;
}

/**
 * A fuzz test's timeout: `suiteMs` for the suite's few cases; none in a campaign (TYPEVISOR_FUZZ_RUNS set), whose
 * length is set by its runs and its --seconds budget, so a million cases are not cut off by a suite timeout.
 */
export function fuzzTimeout(suiteMs: number): number {
  const runs = Number(process.env.TYPEVISOR_FUZZ_RUNS);
  return Number.isInteger(runs) && runs > 0 ? Infinity : suiteMs;
}

/** Prints the cases a property really ran (scripts/fuzz.mjs reads this line), then fails as fast-check would. */
function report(out: RunSummary): void {
  console.log(`fuzz result ${out.numRuns} cases${out.interrupted ? ' (time budget reached)' : ''}${out.failed ? ' FAILED' : ''}`);
  if (out.failed) {
    const details = out as unknown as fc.RunDetails<unknown>;
    throw new Error(fc.defaultReportMessage(details), { cause: out.errorInstance });
  }
}
