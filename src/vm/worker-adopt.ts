/**
 * How a VM worker gets its VM. A worker spawned for one VM has it in workerData. A pooled worker (src/host/
 * worker-pool.ts) is started ahead of need with no VM: it loads the runtime module (the slow part of a worker's
 * start, seconds from source under tsx), runs the module's optional `warmUp()` (src/vm/warm-up.ts), says `pool-ready`, and waits for the host to hand it a VM (`adopt`).
 */
import type { MessagePort } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import type { WorkerInit } from './protocol.js';

/** workerData of a pooled worker. */
export interface PooledWorkerData {
  pooled: true;
  runtimeModule: string;
}

/** Messages between the host and a pooled worker before it has a VM. */
export type PoolMessage = { type: 'pool-ready' } | { type: 'adopt'; init: WorkerInit };

export function isPooledWorkerData(data: unknown): data is PooledWorkerData {
  return typeof data === 'object' && data !== null && (data as Partial<PooledWorkerData>).pooled === true;
}

export function runtimeModuleUrl(module: string): string {
  return module.startsWith('file:') ? module : pathToFileURL(module).href;
}

/** The VM this worker runs: from workerData, or (pooled) after preloading, from the host's `adopt` message. */
export async function receiveInit(port: MessagePort, data: unknown): Promise<WorkerInit> {
  if (!isPooledWorkerData(data)) return data as WorkerInit;
  // Module loading and the first compile happen now, while nothing waits for this worker.
  const mod = (await import(runtimeModuleUrl(data.runtimeModule))) as { warmUp?: () => Promise<void> };
  try {
    await mod.warmUp?.();
  } catch {
    /* a worker that could not warm up is still a worker: it only runs its first restore colder */
  }
  port.postMessage({ type: 'pool-ready' } satisfies PoolMessage);
  const msg = await new Promise<PoolMessage>((resolve) => port.once('message', resolve));
  if (msg.type !== 'adopt') throw new Error(`a pooled VM worker expected 'adopt', got ${JSON.stringify(msg.type)}`);
  return msg.init;
}
