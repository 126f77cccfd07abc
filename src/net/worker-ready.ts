/**
 * Waiting for a worker thread started ahead of need to say it is ready (the daemon's warm pools of VM workers and
 * network workers).
 */
import type { Worker } from 'node:worker_threads';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * How to start the worker whose entry module is `name` (no extension) beside the module at `fromUrl` (its
 * import.meta.url): from dist, the .js file; under tsx (tests and development from source), a tiny bootstrap that
 * registers tsx's loader and then imports the .ts file, since Node 20 does not apply `--import tsx` from a
 * worker's execArgv to the entry module. Pass both to `new Worker(entry, { eval, ... })`.
 */
export function workerEntry(name: string, fromUrl: string): { entry: URL | string; eval: boolean } {
  const ext = extname(fileURLToPath(fromUrl));
  const script = new URL(`./${name}${ext}`, fromUrl);
  if (ext !== '.ts') return { entry: script, eval: false };
  const api = import.meta.resolve('tsx/esm/api');
  const entry = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(script.href)}); })`;
  return { entry, eval: true };
}

/**
 * Resolves with `worker` at its first message that `isReady` accepts. Rejects on a worker error (ending the
 * worker) or when it exits first (`exitedEarly` names the error).
 */
export function workerReady<M>(
  worker: Worker,
  isReady: (msg: M) => boolean,
  exitedEarly: (code: number) => Error,
): Promise<Worker> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: M): void => {
      if (!isReady(msg)) return;
      settle();
      resolve(worker);
    };
    const onError = (err: Error): void => {
      settle();
      void worker.terminate();
      reject(err);
    };
    const onExit = (code: number): void => {
      settle();
      reject(exitedEarly(code));
    };
    const settle = (): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}
