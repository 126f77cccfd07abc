/**
 * Node's side of harts on threads of their own (src/machine/parallel): a worker_thread per hart, and the clock they
 * share with the board.
 */
import { Worker } from 'node:worker_threads';
import { workerEntry } from '../net/worker-ready.js';
import type { HartThreadSpawner } from '../machine/parallel/hart-threads.js';
import type { HartThreadMessage } from '../machine/parallel/hart-thread.js';

/**
 * Milliseconds of the host's monotonic clock, the same on every thread. performance.now() counts from each
 * thread's own start, so harts on different threads would disagree on mtime, and a guest that reads time going
 * backwards between its CPUs (Linux's clocksource) breaks.
 */
export function sharedClockMs(): number {
  const [s, ns] = process.hrtime();
  return s * 1000 + ns / 1e6;
}

/** Whether a VM with several vCPUs runs them on threads of their own: yes unless TYPEVISOR_HART_THREADS=0. */
export function hartThreadsWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.TYPEVISOR_HART_THREADS !== '0';
}

/** A worker_thread per hart; `onThreadId` hears each one's Linux thread id (for CPU placement). */
export function nodeHartThreadSpawner(onThreadId?: (hartId: number, tid: number) => void): HartThreadSpawner {
  return (init, onMessage) => {
    const { entry, eval: evalEntry } = workerEntry('hart-worker', import.meta.url);
    const worker = new Worker(entry, {
      eval: evalEntry,
      workerData: init,
      // A hart thread holds its decode cache and translations, no guest RAM, and allocates next to nothing per
      // instruction: a 2 MiB young generation (8 MiB cost a 4-vCPU VM 34 MiB more RSS, for the same speed).
      resourceLimits: { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 2, stackSizeMb: 8 },
    });
    worker.on('message', (m: HartThreadMessage | { kind: 'tid'; hartId: number; tid: number }) => {
      if (m.kind === 'tid') {
        if (m.tid > 0) onThreadId?.(m.hartId, m.tid);
        return;
      }
      onMessage(m);
    });
    worker.on('error', (err) =>
      onMessage({ kind: 'fault', hartId: init.hartId, message: `hart thread failed: ${err.message}`, pc: 0 }),
    );
    // A hart thread must not keep the VM's process alive on its own.
    worker.unref();
    return { terminate: () => void worker.terminate() };
  };
}
