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
import type { CreateRuntime, GuestRuntime, RuntimeHooks, RuntimeResources } from './runtime.js';
import { NicLink } from './nic-link.js';
import { CpuPacer } from './cpu-pacer.js';
import { PUBLISH_INTERVAL_MS, writeCounters } from './shared-counters.js';
import { AgentError } from './agent-client.js';

if (!parentPort) throw new Error('src/vm/worker.ts must run inside a worker thread');
const port = parentPort;
const init = workerData as WorkerInit;

/**
 * Guest threads run at a lower scheduling priority than the daemon's thread, so the control plane (API, other
 * VMs' control messages) stays responsive when guests saturate the host's cores. On Linux setpriority() takes a
 * thread id and affects only that thread; elsewhere this is skipped.
 */
function ownThreadId(): number | undefined {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(tid) && tid > 0 ? tid : undefined;
  } catch {
    return undefined; // not Linux
  }
}
const tid = ownThreadId();
if (tid !== undefined && init.nice !== undefined) {
  try {
    setPriority(tid, init.nice);
  } catch {
    /* not permitted: run at the default priority */
  }
}
// The host places this thread under the VM's CPU limits (cgroups or affinity) by its thread id.
if (tid !== undefined) port.postMessage({ type: 'threads', tids: [tid] } satisfies WorkerMessage);

if (init.counters) {
  const view = new Float64Array(init.counters);
  // unref: publishing must not keep an ending worker alive.
  setInterval(() => {
    if (runtime) writeCounters(view, runtime.counters());
  }, PUBLISH_INTERVAL_MS).unref();
}

/** The run-loop cap, kept across guest reboots (a new runtime gets the same pacer). */
let pacer: CpuPacer | null = null;

/** Links to the VM's networks; they outlive each runtime (a reboot in place builds a new one over them). */
const resources: RuntimeResources = { nicLinks: (init.nicPorts ?? []).map((p) => new NicLink(p)) };

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
  runtime = await (await loadFactory())(init.config, hooks, resources);
  if (pacer) runtime.setPacer?.(() => pacer!.next());
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
  closePorts();
}

function closePorts(): void {
  for (const l of resources.nicLinks) l.close();
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
      runtime = await (await loadFactory())(init.config, hooks, resources);
      if (pacer) runtime.setPacer?.(() => pacer!.next());
      if (req.restore) {
        if (!runtime.restore) throw new Error('this runtime cannot restore a machine state');
        const state = await runtime.restore(req.restore.path, { lazyRam: req.restore.lazyRam });
        return { type: 'reply', id: req.id, ok: true, state };
      }
      await runtime.start();
      return { type: 'reply', id: req.id, ok: true };
    }
    case 'cpu-cap': {
      // Before start the pacer is kept for the runtime start creates.
      const r = runtime;
      if (r && !r.setPacer) throw new Error('this guest runtime cannot cap its run loop');
      if (req.percent === null) {
        pacer = null;
        r?.setPacer?.(null);
      } else if (pacer) pacer.setCap(req.percent);
      else {
        const p = new CpuPacer(req.percent);
        pacer = p;
        r?.setPacer?.(() => p.next());
      }
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
    case 'exec': {
      const r = need();
      if (!r.agentExec) throw new AgentError('no-agent', 'this VM runtime cannot run commands in the guest');
      const { id, type, ...exec } = req;
      void type;
      const result = await r.agentExec(exec);
      return { type: 'reply', id, ok: true, exec: result };
    }
    case 'balloon': {
      const r = need();
      if (!r.setBalloonTarget) throw new Error('this VM has no balloon');
      r.setBalloonTarget(req.targetBytes);
      return { type: 'reply', id: req.id, ok: true };
    }
    case 'nic-rate': {
      const r = need();
      if (!r.setNicRate) throw new Error('this VM has no NICs');
      r.setNicRate(req.nic, req.rx, req.tx);
      return { type: 'reply', id: req.id, ok: true };
    }
    default: {
      const never: never = req;
      throw new Error(`unknown request ${JSON.stringify(never)}`);
    }
  }
}

function failure(id: number, err: unknown): WorkerMessage {
  if (err instanceof AgentError)
    return { type: 'reply', id, ok: false, error: err.message, agentFailure: err.failure, agentReason: err.reason };
  return { type: 'reply', id, ok: false, error: errorText(err) };
}

// Requests are handled one at a time in arrival order, so a pause never overtakes the start before it. Execs
// run alongside: they wait on the guest, and a stop must be able to end them.
let queue: Promise<void> = Promise.resolve();
port.on('message', (req: ControlRequest) => {
  if (req.type === 'exec') {
    const postLate = (msg: WorkerMessage): void => {
      try {
        post(msg);
      } catch {
        /* the worker is ending and its port is closed */
      }
    };
    handle(req).then(postLate, (err: unknown) => postLate(failure(req.id, err)));
    return;
  }
  queue = queue.then(async () => {
    let reply: WorkerMessage;
    try {
      reply = await handle(req);
    } catch (err) {
      reply = failure(req.id, err);
    }
    if (!ending || req.type === 'stop') post(reply);
    if (req.type === 'stop') closePorts();
  });
});

init.consolePort.on('message', (bytes: Uint8Array) => {
  runtime?.consoleInput(bytes);
});
