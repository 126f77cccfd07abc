/**
 * The entry point of one VM's worker thread. It owns the guest runtime (CPU loop, devices, backends) and obeys
 * typed control requests from the host; console bytes flow over a dedicated MessagePort.
 * Whatever the guest does only ever blocks this thread, never the daemon's.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import type { ControlRequest, WorkerInit, WorkerMessage } from './protocol.js';
import type { CreateRuntime, GuestRuntime, RuntimeHooks } from './runtime.js';

if (!parentPort) throw new Error('src/vm/worker.ts must run inside a worker thread');
const port = parentPort;
const init = workerData as WorkerInit;

/**
 * Guest threads run at a lower scheduling priority than the daemon's thread, so the control plane (API, other
 * VMs' control messages) stays responsive when guests saturate the host's cores. On Linux setpriority() takes a
 * thread id and affects only that thread; elsewhere this is skipped.
 */
function lowerThreadPriority(nice: number): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, nice);
  } catch {
    /* not Linux, or not permitted: run at the default priority */
  }
}
if (init.nice !== undefined) lowerThreadPriority(init.nice);

let runtime: GuestRuntime | undefined;
let createRuntime: CreateRuntime | undefined;
let ending = false;

function post(msg: WorkerMessage): void {
  port.postMessage(msg);
}

const hooks: RuntimeHooks = {
  console(bytes) {
    // Copy: the runtime may reuse its buffer after the call returns.
    init.consolePort.postMessage(bytes.slice());
  },
  poweroff() {
    void finish({ type: 'poweroff' });
  },
  rebooted() {
    post({ type: 'guest-reboot' });
  },
  fault(message) {
    void finish({ type: 'fault', message });
  },
};

async function loadFactory(): Promise<CreateRuntime> {
  if (!createRuntime) {
    const spec = init.runtimeModule.startsWith('file:') ? init.runtimeModule : pathToFileURL(init.runtimeModule).href;
    const mod = (await import(spec)) as { createRuntime?: CreateRuntime };
    if (typeof mod.createRuntime !== 'function') throw new Error(`${init.runtimeModule} does not export createRuntime`);
    createRuntime = mod.createRuntime;
  }
  return createRuntime;
}

async function rebootInPlace(): Promise<void> {
  const old = runtime;
  runtime = undefined;
  if (old) await old.stop();
  runtime = await (await loadFactory())(init.config, hooks);
  await runtime.start();
}

/** Ends the VM on the guest's initiative: report why, release everything, let the thread exit. */
async function finish(msg: WorkerMessage): Promise<void> {
  if (ending) return;
  ending = true;
  const r = runtime;
  runtime = undefined;
  try {
    await r?.stop();
  } catch {
    /* the VM is ending anyway */
  }
  post(msg);
  init.consolePort.close();
  port.close();
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function need(): GuestRuntime {
  if (!runtime) throw new Error('the VM is not running');
  return runtime;
}

async function handle(req: ControlRequest): Promise<WorkerMessage> {
  switch (req.type) {
    case 'start': {
      if (runtime) throw new Error('already started');
      runtime = await (await loadFactory())(init.config, hooks);
      if (req.restore) {
        if (!runtime.restore) throw new Error('this runtime cannot restore a machine state');
        const state = await runtime.restore(req.restore.path, { lazyRam: req.restore.lazyRam });
        return { type: 'reply', id: req.id, ok: true, state };
      }
      await runtime.start();
      return { type: 'reply', id: req.id, ok: true };
    }
    case 'release-guest': {
      const r = need();
      if (!r.releaseGuest) throw new Error('this runtime cannot release its guest');
      await r.releaseGuest();
      return { type: 'reply', id: req.id, ok: true };
    }
    case 'restore-state': {
      const r = need();
      if (!r.restore) throw new Error('this runtime cannot restore a machine state');
      return { type: 'reply', id: req.id, ok: true, state: await r.restore(req.path, { lazyRam: req.lazyRam }) };
    }
    case 'agent':
      if (/[\r\n]/.test(req.line) || !need().agentSend(req.line))
        throw new Error('no guest agent channel, or a bad request line');
      return { type: 'reply', id: req.id, ok: true };
    case 'switch-disks': {
      const r = need();
      if (!r.switchDisks) throw new Error('this runtime cannot switch disks');
      await r.switchDisks(req.paths, req.phase);
      return { type: 'reply', id: req.id, ok: true };
    }
    case 'save-state': {
      const r = need();
      if (!r.saveState) throw new Error('this runtime cannot save its machine state');
      return { type: 'reply', id: req.id, ok: true, state: await r.saveState(req.path) };
    }
    case 'pause':
      await need().pause();
      return { type: 'reply', id: req.id, ok: true };
    case 'resume':
      await need().resume();
      return { type: 'reply', id: req.id, ok: true };
    case 'stop': {
      ending = true;
      const r = runtime;
      runtime = undefined;
      await r?.stop();
      return { type: 'reply', id: req.id, ok: true };
    }
    case 'shutdown':
      if (!need().agentSend('shutdown')) throw new Error('this VM has no guest agent channel (virtio-console)');
      return { type: 'reply', id: req.id, ok: true };
    case 'reboot':
      await rebootInPlace();
      return { type: 'reply', id: req.id, ok: true };
    case 'stats':
      return { type: 'reply', id: req.id, ok: true, counters: need().counters() };
    case 'balloon': {
      const r = need();
      if (!r.setBalloonTarget) throw new Error('this VM has no balloon');
      r.setBalloonTarget(req.targetBytes);
      return { type: 'reply', id: req.id, ok: true };
    }
    default: {
      const never: never = req;
      throw new Error(`unknown request ${JSON.stringify(never)}`);
    }
  }
}

// Requests are handled one at a time in arrival order, so a pause never overtakes the start before it.
let queue: Promise<void> = Promise.resolve();
port.on('message', (req: ControlRequest) => {
  queue = queue.then(async () => {
    let reply: WorkerMessage;
    try {
      reply = await handle(req);
    } catch (err) {
      reply = { type: 'reply', id: req.id, ok: false, error: errorText(err) };
    }
    if (!ending || req.type === 'stop') post(reply);
    if (req.type === 'stop') {
      init.consolePort.close();
      port.close();
    }
  });
});

init.consolePort.on('message', (bytes: Uint8Array) => {
  runtime?.consoleInput(bytes);
});
