/**
 * The entry point of one VM's worker thread (thread mode). The VM itself is hosted by vm-host.ts, shared with the
 * process mode; here control requests travel on the worker's own channel, console bytes on a dedicated
 * MessagePort and counters through shared memory. Whatever the guest does only ever blocks this thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { ControlRequest, WorkerInit, WorkerMessage } from './protocol.js';
import { NicLink } from './nic-link.js';
import { PUBLISH_INTERVAL_MS, writeCounters } from './shared-counters.js';
import { lowerThreadPriority, ownThreadId, VmHost } from './vm-host.js';
import { receiveInit } from './worker-adopt.js';

if (!parentPort) throw new Error('src/vm/worker.ts must run inside a worker thread');
const port = parentPort;
// A pooled worker (src/host/worker-pool.ts) gets its VM later, from the host's `adopt` message.
const init: WorkerInit = await receiveInit(port, workerData);

const tid = ownThreadId();
lowerThreadPriority(tid, init.nice);
// The host places this thread under the VM's CPU limits (cgroups or affinity) by its thread id.
if (tid !== undefined) port.postMessage({ type: 'threads', tids: [tid] } satisfies WorkerMessage);

const host = new VmHost(
  { config: init.config, runtimeModule: init.runtimeModule, nicLinks: (init.nicPorts ?? []).map((p) => NicLink.overPort(p)) },
  {
    post: (msg) => port.postMessage(msg),
    console: (bytes) => init.consolePort.postMessage(bytes),
    ended: () => {
      init.consolePort.close();
      port.close();
    },
  },
);

if (init.counters) {
  const view = new Float64Array(init.counters);
  // unref: publishing must not keep an ending worker alive.
  setInterval(() => {
    const c = host.counters();
    if (c) writeCounters(view, c);
  }, PUBLISH_INTERVAL_MS).unref();
}

port.on('message', (req: ControlRequest) => host.receive(req));
init.consolePort.on('message', (bytes: Uint8Array) => host.consoleInput(bytes));
