/**
 * Waiting for a worker thread started ahead of need to say it is ready (the daemon's warm pools of VM workers and
 * network workers).
 */
import type { Worker } from 'node:worker_threads';

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
