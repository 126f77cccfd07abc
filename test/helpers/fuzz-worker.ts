/**
 * Runs a fuzz property in a worker thread and resolves with the one message the worker posts.
 *
 * Why: node:test enables an async hook for the whole test file that records every promise created (to tie
 * late async activity to its test) and registers a destroy callback for each. A property whose cases each
 * make dozens of promises (every qcow2 read, write and table load is async) spent about 60% of its CPU in that
 * bookkeeping and the garbage collection it causes: 10,000 qcow2 cases took 6.3 s of CPU inside the runner
 * and 2.5 s in a worker. A worker has its own async-hook registry, so the same cases run there without it.
 *
 * The worker inherits the environment (TYPEVISOR_FUZZ_RUNS, _SEED, _SECONDS reach fuzzParams unchanged) and
 * its console reaches the test's output (the `fuzz seed` and `fuzz result` lines scripts/fuzz.mjs reads). A
 * failing property throws in the worker: its error (fast-check's report: seed, path, counterexample) rejects
 * the returned promise.
 */
import { Worker } from 'node:worker_threads';

/** Run from TypeScript sources (tsx) rather than from dist. */
const fromSource = import.meta.url.endsWith('.ts');

/**
 * `entry` is the worker module as built (…/name.js, e.g. `new URL('./x-worker.js', import.meta.url)`); under tsx
 * its .ts source is loaded instead, through a bootstrap that registers tsx's loader in the worker (Node 20 does
 * not apply `--import tsx` to a worker's entry module; src/vm/worker-engine.ts does the same).
 */
export function runInWorker<T>(entry: URL, data: unknown): Promise<T> {
  const source = new URL(entry.href.replace(/\.js$/, '.ts'));
  const worker = fromSource
    ? new Worker(
        `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(source.href)}); })`,
        { eval: true, workerData: data },
      )
    : new Worker(entry, { workerData: data });
  return new Promise<T>((resolve, reject) => {
    let answered = false;
    worker.once('message', (msg: T) => {
      answered = true;
      resolve(msg);
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`fuzz worker ${entry.pathname} exited (code ${code}) without an answer`));
    });
  });
}
