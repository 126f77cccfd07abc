/**
 * A hart thread's entry (src/machine/parallel/hart-thread.ts): started by the board's spawner below with the
 * shared memory, it tells its Linux thread id (the host places each vCPU thread in the VM's CPU groups), runs the
 * hart until the board says exit, and ends.
 */
import { parentPort, workerData, isMainThread } from 'node:worker_threads';
import { HartThread, type HartThreadInit } from '../machine/parallel/hart-thread.js';
import { createHart } from '../machine/hart-adapter.js';
import { createGuestAtomics, type GuestAtomics } from '../riscv/atomics.js';
import { sharedClockMs } from './hart-threads.js';
import { channelCodeShare } from './code-share.js';
import { ownThreadId } from './vm-host.js';

if (!isMainThread && parentPort) {
  const init = workerData as HartThreadInit;
  const port = parentPort;
  port.postMessage({ kind: 'tid', hartId: init.hartId, tid: ownThreadId() ?? -1 });
  const thread = new HartThread(init, {
    createHart,
    hostNowMs: sharedClockMs,
    post: (m) => port.postMessage(m),
    atomics: requireAtomics(init.memory),
    joinCodeShare: channelCodeShare,
  });
  thread.run();
}

/** Harts on threads need real atomics: without them an AMO would not be atomic, and a guest's locks would break. */
function requireAtomics(memory: object): GuestAtomics {
  const atomics = createGuestAtomics(memory);
  if (!atomics) throw new Error('this engine has no WebAssembly threads: harts cannot run on threads of their own');
  return atomics;
}
