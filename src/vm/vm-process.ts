/**
 * The entry point of a VM process (process mode): `node vm-process.js --init <vmdir>/vm-process-init.json`, or
 * `--pooled JSON` for one started ahead of need that is handed its VM later (vm-process-start.ts).
 * It hosts one VM with vm-host.ts (the same code a worker thread runs) and serves it on a unix socket in the VM's
 * folder (process-channel.ts). The daemon spawns it detached, in a session of its own, so the VM outlives the
 * daemon: a later daemon connects again, says hello, and takes over console, stats and control.
 *
 * One daemon connection at a time: a new one that says hello replaces the old one. While no daemon is
 * connected the guest runs on; its console output is kept (the last 256 KiB) for the next daemon, NIC frames
 * are dropped, and an end of the VM is written to vm-process-exit.json before the process exits.
 */
import { createServer, type Socket } from 'node:net';
import { existsSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../host/atomic.js';
import { fixMmapThreshold, startMallocTrim } from '../host/memory/malloc.js';
import type { ControlRequest, WorkerMessage } from './protocol.js';
import { NicLink } from './nic-link.js';
import type { FrameOffload } from '../net/packet/offload.js';
import { ProcessChannel } from './process-channel.js';
import { processStartTime } from './process-identity.js';
import { PROCESS_FILES, type HelloReply, type ProcessExitFile, type ProcessRuntimeFile } from './process-protocol.js';
import { createCountersBuffer, writeCounters } from './shared-counters.js';
import { lowerThreadPriority, ownThreadId, VmHost } from './vm-host.js';
import { dropPrivileges } from './drop-privileges.js';
import { HeldPaths, PreopenedFiles } from './preopened-files.js';
import { openablePath, setHeldDescriptors, setPathAliases } from '../storage/path-alias.js';
import { runtimeModuleUrl } from './worker-adopt.js';
import { receiveVmProcessInit } from './vm-process-start.js';

/** The id of the start this process begins on its own (no daemon request has a negative id). */
const EARLY_START_ID = -2;
/** How often counters are pushed to the connected daemon. */
const COUNTERS_INTERVAL_MS = 50;
/** Console output kept for the next daemon while none is connected. */
const CONSOLE_BACKLOG_BYTES = 256 * 1024;

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} vm-process ${process.pid}: ${line}\n`);
}

// Before the guest allocates RAM: chunks it gives back must leave the process (see src/host/memory/malloc.ts).
fixMmapThreshold();
// What the VM frees in small blocks (decoded pages, compiler zones) leaves the process, as in the daemon.
startMallocTrim();
const tid = ownThreadId();
const start = await receiveVmProcessInit(process.argv, (pooled) => {
  process.title = 'typevisor-vm (pool)';
  lowerThreadPriority(tid, pooled.nice);
});
const init = start.init;
const name = init.config.name;
const runtimeFile = join(init.vmDir, PROCESS_FILES.runtime);
const exitFile = join(init.vmDir, PROCESS_FILES.exit);
process.title = `typevisor-vm ${name}`;
lowerThreadPriority(tid, init.nice);
const startTime = processStartTime(process.pid) ?? 0;
// A process that will drop its privileges cannot create files in the VM's folder later: it writes its exit note
// into the empty file the daemon made for it.
if (!init.user) rmSync(exitFile, { force: true });

/**
 * Before the drop: everything the VM reads at start (boot files, disks with their backing chains) and the code it
 * loads later (the runtime module), while every path is still reachable. A file that cannot be opened is left to
 * the start, which then reports it as it would anyway.
 */
let preopened: PreopenedFiles | undefined;
let held: HeldPaths | undefined;
if (init.user) {
  try {
    preopened = await PreopenedFiles.open(init.config);
  } catch (err) {
    log(`could not open the VM's files before dropping privileges: ${(err as Error).message}`);
  }
  held = HeldPaths.open(init.vmDir, init.config, init.restoreFrom);
  await import(runtimeModuleUrl(init.runtimeModule));
}

let channel: ProcessChannel | undefined;
let backlog: Uint8Array[] = [];
let backlogBytes = 0;
let ending = false;

/** One receiver per NIC, set by its link; frames come from the daemon, which bridges them to the network. */
const nicReceivers: ((frames: Uint8Array[], offloads?: (FrameOffload | null)[]) => void)[] = [];
const nicLinks = (init.config.nics ?? []).map(
  (_nic, index) =>
    new NicLink((onFrames) => {
      nicReceivers[index] = onFrames;
      return {
        send: (frame, _owned, offload) => channel?.sendNic(index, frame, offload),
        flush: () => channel?.flush(),
        close: () => {},
      };
    }),
);

function keepConsole(bytes: Uint8Array): void {
  backlog.push(bytes);
  backlogBytes += bytes.length;
  while (backlogBytes > CONSOLE_BACKLOG_BYTES && backlog.length > 1) backlogBytes -= backlog.shift()!.length;
}

/** The event that ended the VM on its own, for a daemon that is not connected to hear it. */
let endEvent: WorkerMessage | undefined;

const host = new VmHost(
  { config: init.config, runtimeModule: init.runtimeModule, nicLinks, preopened },
  {
    post: (msg) => {
      if (msg.type === 'poweroff' || msg.type === 'fault') endEvent = msg;
      channel?.sendControl(msg);
    },
    console: (bytes) => {
      if (channel) channel.sendConsole(bytes);
      else keepConsole(bytes);
    },
    ended: () => exitProcess(),
  },
);

function writeExit(kind: ProcessExitFile['kind'], message?: string): void {
  const note = { kind, message, pid: process.pid, at: new Date().toISOString() } satisfies ProcessExitFile;
  try {
    if (init.user) writeFileSync(openablePath(exitFile), JSON.stringify(note) + '\n');
    else writeJsonAtomic(exitFile, note, 0o600);
  } catch (err) {
    log(`could not write ${exitFile}: ${(err as Error).message}`);
  }
}

/** The VM is over: leave a note when it ended on its own, remove the runtime file and the socket, exit. */
function exitProcess(): void {
  if (ending) return;
  ending = true;
  if (endEvent?.type === 'poweroff') writeExit('poweroff');
  else if (endEvent?.type === 'fault') writeExit('fault', endEvent.message);
  else if (terminated) writeExit('terminated', 'the VM process got SIGTERM');
  else writeExit('stopped');
  void preopened?.closeUnused();
  server.close();
  try {
    // Without privileges in the VM's folder these stay; the daemon removes them (and a new process replaces them).
    rmSync(runtimeFile, { force: true });
    unlinkSync(init.socketPath);
  } catch {
    /* gone already, or not ours to remove */
  }
  const done = (): void => process.exit(0);
  if (channel) channel.end(done);
  // A daemon that does not read the last records must not keep the process alive.
  setTimeout(done, 2000).unref();
  if (!channel) done();
}

let terminated = false;
process.on('SIGTERM', () => {
  // A plain kill of the VM process: flush and close the disks, as a stop would.
  terminated = true;
  log('SIGTERM: stopping the VM');
  host.receive({ id: -1, type: 'stop' });
});
process.on('SIGHUP', () => {}); // no controlling terminal to lose, but never die of one

/**
 * Runs a handler of the daemon's input. An exception there is a bug of the VM's own code (in a worker it would end
 * the thread): the VM ends as a fault naming it, its disks flushed, instead of breaking the channel.
 */
function guarded(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    log(`internal error: ${e.stack ?? e.message}`);
    host.fail(`internal error in the VM process: ${e.message}`);
  }
}

/** A new connection becomes the daemon's once it says hello with this VM's name. */
function accept(socket: Socket): void {
  let greeted = false;
  const ch: ProcessChannel = new ProcessChannel(socket, {
    control: (msg) => {
      if (!greeted) {
        if (msg.type !== 'hello' || typeof msg.id !== 'number') {
          log(`closing a connection whose first record is no hello (${String(msg.type)})`);
          ch.destroy();
          return;
        }
        const id = msg.id;
        if (msg.name !== name) {
          ch.sendControl({ type: 'hello', id, ok: false, error: `this process hosts '${name}', not '${String(msg.name)}'` });
          ch.end();
          return;
        }
        greeted = true;
        void host.afterQueued(() => {
          if (!ch.isOpen) return;
          const previous = channel;
          channel = ch;
          if (previous && previous !== ch) {
            log('a new daemon connection said hello: closing the previous one');
            previous.destroy();
          }
          const reply: HelloReply = {
            type: 'hello',
            id,
            ok: true,
            name,
            pid: process.pid,
            startTime,
            tids: tid !== undefined ? [tid] : [],
            status: host.status(),
          };
          ch.sendControl(reply);
          for (const b of backlog) ch.sendConsole(b);
          backlog = [];
          backlogBytes = 0;
        });
        return;
      }
      if (channel !== ch) return;
      guarded(() => host.receive(msg as unknown as ControlRequest));
    },
    console: (bytes) => {
      if (channel === ch) guarded(() => host.consoleInput(bytes));
    },
    nic: (index, frame, offload) => {
      if (channel === ch) guarded(() => nicReceivers[index]?.([frame], offload ? [offload] : undefined));
    },
    counters: () => {
      /* only the VM sends counters */
    },
    close: (err) => {
      log(`daemon connection closed${err ? `: ${err.message}` : ''}${channel === ch ? '' : ' (not the current one)'}`);
      if (channel === ch) channel = undefined;
    },
  });
}

const view = new Float64Array(createCountersBuffer());
setInterval(() => {
  const c = host.counters();
  if (!channel || !c) return;
  writeCounters(view, c);
  channel.sendCounters(view);
}, COUNTERS_INTERVAL_MS).unref();

const server = createServer(accept);
if (existsSync(init.socketPath)) unlinkSync(init.socketPath);
const mask = process.umask(0o177);
server.listen(init.socketPath, () => {
  process.umask(mask);
  writeJsonAtomic(
    runtimeFile,
    {
      pid: process.pid,
      startTime,
      socketPath: init.socketPath,
      startedAt: new Date().toISOString(),
    } satisfies ProcessRuntimeFile,
    0o600,
    // It names this process, which a crash of the host ends too: whole is enough, durable is not needed.
    { durable: false },
  );
  // The socket and the runtime file exist: from here on the process needs no privileges.
  if (init.user) {
    try {
      const note = dropPrivileges(init.user);
      if (note) log(note);
      const paths = held;
      if (paths) {
        setPathAliases((p) => paths.alias(p));
        setHeldDescriptors((p) => paths.take(p));
      }
      log(`running as uid ${init.user.uid} gid ${init.user.gid}`);
    } catch (err) {
      log(`cannot drop privileges, not running the VM as root: ${(err as Error).message}`);
      process.exit(1);
    }
  }
  log(`hosting ${name} on ${init.socketPath}${start.pooled ? ' (a pooled process, adopted)' : ''}`);
  start.signalReady();
  // Unprivileged from here: the restore the daemon is about to ask for begins now, while it connects.
  if (init.restoreFrom && init.restoreEarly)
    host.startEarly({
      id: EARLY_START_ID,
      type: 'start',
      restore: { path: init.restoreFrom, lazyRam: init.restoreEarly.lazyRam },
    });
});
