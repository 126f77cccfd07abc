/**
 * Process mode: every VM runs in a child process of its own (vm-process.ts), spawned detached (its own session)
 * so that it outlives the daemon, and driven over a unix socket in the VM's folder (process-channel.ts) with the
 * same typed requests as a worker thread. NIC frames travel on the socket and the daemon bridges them to the
 * network's worker. A daemon that starts while such a process runs takes it over (`reattach`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { basename, dirname, extname, join } from 'node:path';
import type { VmConfig } from './config.js';
import type { RuntimeCounters, StateFileInfo } from './protocol.js';
import type { Engine, EngineEvents, EngineResources, EngineVm, LeftBehind, ReattachedVm } from '../host/engine.js';
import { VmCpuMeter } from '../host/cpu/accounting.js';
import { readCounters } from './shared-counters.js';
import { HostedVm, VmRequestError, type ControlTransport } from './hosted-vm.js';
import { connectNicPort, type NicLink as FramePort } from '../net/frame-port.js';
import { ProcessChannel } from './process-channel.js';
import { processStartTime, sameProcessAlive } from './process-identity.js';
import { writeJsonAtomic } from '../host/atomic.js';
import {
  PROCESS_FILES,
  vmSocketPath,
  type HelloReply,
  type ProcessExitFile,
  type ProcessInit,
  type ProcessRuntimeFile,
} from './process-protocol.js';
import { defaultRuntimeModule } from './worker-engine.js';
import { WarmPool, type WarmPoolStats } from '../host/worker-pool.js';
import { PooledProcess } from './process-pool.js';
import type { VmProcessCgroups } from '../host/vm-process-cgroup.js';
import { vmProcessNodeFlags } from './vm-process-flags.js';
import { inside, moveStateFile, type VmProcessUsers } from '../host/vm-process-user.js';
import type { VmProcessUser } from './drop-privileges.js';

const moduleExt = extname(fileURLToPath(import.meta.url));
/** Under tsx (tests and development from source) the VM process needs the tsx loader too. */
const runningFromSource = moduleExt === '.ts';

export interface ProcessEngineOptions {
  /** Module exporting createRuntime; defaults to the machine in src/machine (machine-runtime.ts). */
  runtimeModule?: string;
  /** Niceness of VM processes' guest threads (default 10: below the daemon's). */
  nice?: number;
  /** How long a control request may take before the process is considered wedged. */
  requestTimeoutMs?: number;
  /** V8 old-generation limit per VM process (MiB; guest RAM lives outside it). */
  maxOldSpaceMb?: number;
  /** A memory and pids cgroup per VM process (src/host/vm-process-cgroup.ts), where the host offers them. */
  cgroups?: VmProcessCgroups;
  /** An unprivileged uid per VM process (a root daemon; src/host/vm-process-user.ts); absent: the daemon's user. */
  users?: VmProcessUsers;
  /**
   * VM processes kept started ahead of need (runtime module loaded and warmed up, no VM; src/vm/process-pool.ts),
   * so a start, restore or running clone skips the process start and module loading. Default 0 (off); the daemon
   * turns it on in process mode.
   */
  warmProcesses?: number;
  /** No warm process is started while free host memory is below this. */
  warmMinFreeBytes?: number;
  /** Where idle pooled processes write until adopted (the daemon's home); default /dev/null. */
  poolLogFile?: string;
  log?: (line: string) => void;
}

/** How long a new VM process may take to listen (module loading under a loaded host, tsx). */
const SPAWN_TIMEOUT_MS = 60_000;
/**
 * A new pooled process's start and warm-up take a core for about a second: not while the VM that just took one
 * restores or boots and answers its first commands (as the worker pool waits, worker-engine.ts).
 */
const WARM_REFILL_DELAY_MS = 2_000;
const HELLO_TIMEOUT_MS = 15_000;

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** The last line the VM process wrote to its log (why it died, when it says so). */
function lastLogLine(vmDir: string): string | undefined {
  try {
    const text = readFileSync(join(vmDir, PROCESS_FILES.log), 'utf8').slice(-4096);
    // The process's own routine lines say nothing about why it ended.
    const lines = text
      .split('\n')
      .map((l) => l.trim())
      .filter(
        (l) => l && !/ vm-process \d+: (hosting|daemon connection closed|a new daemon connection|closing a connection)/.test(l),
      );
    return lines.at(-1)?.slice(0, 300);
  } catch {
    return undefined;
  }
}

/** The last lines of the VM process's log, joined (what it said about its connections, for a broken channel). */
function logTail(vmDir: string, lines: number): string | undefined {
  try {
    const text = readFileSync(join(vmDir, PROCESS_FILES.log), 'utf8').slice(-8192);
    const tail = text
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .slice(-lines);
    return tail.length ? tail.join(' | ').slice(0, 1000) : undefined;
  } catch {
    return undefined;
  }
}

/** How a VM process ended, from the note it left (vm-process-exit.json), consumed once read. */
function takeExitNote(vmDir: string): ProcessExitFile | undefined {
  const path = join(vmDir, PROCESS_FILES.exit);
  const note = readJson<ProcessExitFile>(path);
  rmSync(path, { force: true });
  return note && typeof note.kind === 'string' ? note : undefined;
}

function channelTransport(channel: ProcessChannel): ControlTransport {
  return { post: (msg) => channel.sendControl(msg) };
}

function vmEntry(): string {
  return fileURLToPath(new URL(`./vm-process${moduleExt}`, import.meta.url));
}

/** The node arguments before the VM process's entry module. */
function vmNodeArgs(options: ProcessEngineOptions): string[] {
  return [
    ...vmProcessNodeFlags(options.maxOldSpaceMb ?? 256),
    // By URL: the process starts in the VM's folder, where a bare 'tsx' does not resolve.
    ...(runningFromSource ? ['--import', import.meta.resolve('tsx')] : []),
  ];
}

export class ProcessEngine implements Engine {
  readonly name = 'builtin-process';
  readonly runtimeModule: string;
  readonly pool: WarmPool<PooledProcess> | undefined;
  constructor(private readonly options: ProcessEngineOptions = {}) {
    this.runtimeModule = options.runtimeModule ?? defaultRuntimeModule();
    const size = options.warmProcesses ?? 0;
    if (size > 0) {
      this.pool = new WarmPool<PooledProcess>({
        size,
        start: () =>
          PooledProcess.start({
            nodeArgs: vmNodeArgs(options),
            entry: vmEntry(),
            args: { runtimeModule: this.runtimeModule, nice: options.nice ?? 10 },
            logFile: options.poolLogFile,
            timeoutMs: SPAWN_TIMEOUT_MS,
          }),
        dispose: (p) => p.dispose(),
        died: (p) => p.died(),
        minFreeBytes: options.warmMinFreeBytes,
        refillDelayMs: WARM_REFILL_DELAY_MS,
        log: options.log,
      });
      this.pool.fill();
    }
  }

  create(config: VmConfig, events: EngineEvents, resources: EngineResources = {}): EngineVm {
    if (!resources.vmDir) throw new VmRequestError('process mode needs the VM folder (EngineResources.vmDir)');
    return new ProcessVm(config, events, this.runtimeModule, this.options, resources, resources.vmDir, this.pool);
  }

  poolStats(): WarmPoolStats | undefined {
    return this.pool?.stats();
  }

  /** Ends the idle pooled processes; VM processes are the hypervisor's to stop or leave running. */
  close(): Promise<void> {
    return this.pool?.close() ?? Promise.resolve();
  }

  leftBehind(vmDir: string): LeftBehind | undefined {
    const runtime = readJson<ProcessRuntimeFile>(join(vmDir, PROCESS_FILES.runtime));
    if (runtime && Number.isInteger(runtime.pid) && sameProcessAlive(runtime.pid, runtime.startTime))
      return { kind: 'alive', pid: runtime.pid };
    this.options.cgroups?.release(basename(vmDir), vmDir);
    const note = takeExitNote(vmDir);
    if (note?.kind === 'poweroff')
      return { kind: 'gone', state: 'stopped', reason: 'the guest powered off while the daemon was down' };
    if (note?.kind === 'stopped')
      return { kind: 'gone', state: 'stopped', reason: 'stopped as the earlier daemon asked, which died before it heard' };
    if (note?.kind === 'fault')
      return { kind: 'gone', state: 'crashed', reason: `while the daemon was down: ${note.message ?? 'the machine failed'}` };
    if (note?.kind === 'terminated')
      return { kind: 'gone', state: 'crashed', reason: 'the VM process was terminated (SIGTERM) while the daemon was down' };
    if (runtime) {
      rmSync(join(vmDir, PROCESS_FILES.runtime), { force: true });
      const last = lastLogLine(vmDir);
      return {
        kind: 'gone',
        state: 'crashed',
        reason: `the VM process (pid ${runtime.pid}) ended while the daemon was down${last ? `; its log ends: ${last}` : ''}`,
      };
    }
    return undefined;
  }

  async reattach(config: VmConfig, events: EngineEvents, resources: EngineResources): Promise<ReattachedVm> {
    const vmDir = resources.vmDir;
    if (!vmDir) throw new VmRequestError('reattaching needs the VM folder (EngineResources.vmDir)');
    const runtime = readJson<ProcessRuntimeFile>(join(vmDir, PROCESS_FILES.runtime));
    if (!runtime || !sameProcessAlive(runtime.pid, runtime.startTime)) throw new VmRequestError('the VM process is gone');
    const vm = new ProcessVm(config, events, this.runtimeModule, this.options, resources, vmDir);
    let hello: HelloReply;
    try {
      hello = await vm.attach(runtime);
    } catch (err) {
      // A process that cannot be driven must not hold on to the VM's disks.
      if (sameProcessAlive(runtime.pid, runtime.startTime)) process.kill(runtime.pid, 'SIGKILL');
      await vm.stop().catch(() => {});
      throw err;
    }
    const phase = hello.status.phase;
    return {
      vm,
      started: phase === 'running' || phase === 'paused',
      paused: phase === 'paused',
      disksDetached: hello.status.disksDetached,
    };
  }
}

class ProcessVm extends HostedVm {
  protected readonly peer = 'the VM process';
  private channel: ProcessChannel | undefined;
  private child: ChildProcess | undefined;
  private pid = 0;
  /** The process being brought up (spawn), which a stop() waits for. */
  private spawning: Promise<unknown> | undefined;
  private startTime = 0;
  private pushed: Float64Array | undefined;
  private nicPorts: FramePort[] = [];
  private closed: Promise<void> = Promise.resolve();
  /** The unprivileged user the process runs as (a root daemon), once known. */
  private user: VmProcessUser | undefined;

  constructor(
    config: VmConfig,
    events: EngineEvents,
    private readonly runtimeModule: string,
    private readonly options: ProcessEngineOptions,
    private readonly resources: EngineResources,
    private readonly vmDir: string,
    private readonly pool?: WarmPool<PooledProcess>,
  ) {
    super(config, events, options.requestTimeoutMs ?? 10_000);
  }

  async start(): Promise<void> {
    await this.spawn();
    await this.request({ id: 0, type: 'start' }, 60_000);
  }

  async restore(path: string, opts: { lazyRam: boolean }): Promise<StateFileInfo> {
    const t0 = performance.now();
    // The process opens the state file before it drops root: it may lie in another VM's folder (a running clone). A
    // lazy restore is quick, so the process begins it on its own while this side connects (restoreEarly).
    const startup = await this.spawn({ path, early: opts.lazyRam ? { lazyRam: true } : undefined });
    const t1 = performance.now();
    const reply = await this.request({ id: 0, type: 'start', restore: { path, lazyRam: opts.lazyRam } }, 120_000);
    if (!reply.state) throw new VmRequestError('the VM process did not report the restored state');
    const t2 = performance.now();
    const ms = t2 - t0;
    // What the VM did not account for: spawning the process until it answered its hello, then the messages.
    return {
      ...reply.state,
      ms,
      phases: {
        processStartup: t1 - t0,
        ...startup,
        startRequest: t2 - t1,
        'startRequest.inVm': reply.state.ms,
        ...reply.state.phases,
      },
    };
  }

  override async saveState(path: string): Promise<StateFileInfo> {
    const users = this.options.users;
    const user = users && (this.user ??= users.recorded(this.vmDir));
    // Outside its folder a dropped process may reach nothing by path: it writes into its folder, the daemon moves it.
    const staged =
      users && user && !inside(this.vmDir, path) ? join(users.stagingDir(this.vmDir, user), basename(path)) : undefined;
    this.grant([], [dirname(staged ?? path)]);
    const state = await super.saveState(staged ?? path);
    if (staged) moveStateFile(staged, path);
    return state;
  }

  override restoreInPlace(path: string, opts: { lazyRam: boolean }): Promise<StateFileInfo> {
    // The disks are opened again too: a revert put new overlays in their place.
    this.grant([path, ...this.config.disks.map((d) => d.path)]);
    return super.restoreInPlace(path, opts);
  }

  override switchDisks(paths: (string | null)[], phase: 'detach' | 'attach'): Promise<void> {
    if (phase === 'attach') this.grant(paths.filter((p): p is string => !!p));
    return super.switchDisks(paths, phase);
  }

  consoleInput(bytes: Uint8Array): void {
    this.channel?.sendConsole(bytes);
  }

  /** Forced stop: the process flushes and closes its disks and exits; a wedged one is killed. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.spawning?.catch(() => {});
    if (!this.pid) return;
    if (this.channel?.isOpen) {
      try {
        await this.request({ id: 0, type: 'stop' }, 3_000);
      } catch {
        /* killed below */
      }
    }
    const gone = await this.waitGone(3_000);
    if (!gone && sameProcessAlive(this.pid, this.startTime)) {
      process.kill(this.pid, 'SIGKILL');
      await this.waitGone(5_000);
    }
    this.channel?.destroy();
    await this.closed;
    rmSync(join(this.vmDir, PROCESS_FILES.runtime), { force: true });
    rmSync(join(this.vmDir, PROCESS_FILES.exit), { force: true });
    this.options.cgroups?.release(this.config.name, this.vmDir);
  }

  /** Lets go of the process, which keeps running for the next daemon to reattach (daemon exit). */
  async detach(): Promise<void> {
    this.stopping = true;
    this.channel?.end();
    await this.closed;
  }

  protected publishedCounters(): RuntimeCounters | undefined {
    return this.pushed
      ? readCounters(
          this.pushed,
          (this.config.nics ?? []).map((n) => n.mac),
        )
      : undefined;
  }

  /** The process wrote its exit note for a daemon that might not be listening; this one heard the end itself. */
  protected override onEnded(): void {
    rmSync(join(this.vmDir, PROCESS_FILES.exit), { force: true });
  }

  /** Hands files the process is about to open (and directories it writes into) to its uid; see vm-process-user.ts. */
  private grant(files: string[], writeDirs: string[] = []): void {
    const users = this.options.users;
    if (!users) return;
    this.user ??= users.recorded(this.vmDir);
    if (!this.user) throw new VmRequestError(`the VM process's user is not recorded in ${this.vmDir}`);
    try {
      users.grant(this.vmDir, this.user, files, writeDirs);
    } catch (err) {
      throw new VmRequestError((err as Error).message);
    }
  }

  // ---- the process and its channel ----------------------------------------------------------------------------

  /**
   * Brings up this VM's process (a pooled one adopted, or a new one). A stop() that comes meanwhile (a start
   * undone because its network failed first) waits for it, so no process is left running unseen. Resolves with
   * where the time went (`processStartup.*`, which a restore reports).
   */
  private async spawn(restore?: { path: string; early?: { lazyRam: boolean } }): Promise<Record<string, number>> {
    const spawning = this.spawnProcessForVm(restore);
    this.spawning = spawning;
    try {
      return await spawning;
    } finally {
      if (this.spawning === spawning) this.spawning = undefined;
    }
  }

  private async spawnProcessForVm(restore?: { path: string; early?: { lazyRam: boolean } }): Promise<Record<string, number>> {
    if (this.pid) throw new VmRequestError('the VM process already exists');
    const t0 = performance.now();
    const socketPath = vmSocketPath(this.vmDir);
    const initFile = join(this.vmDir, PROCESS_FILES.init);
    rmSync(join(this.vmDir, PROCESS_FILES.exit), { force: true });
    this.user = this.options.users?.prepare(this.vmDir, this.config);
    const init: ProcessInit = {
      config: this.config,
      runtimeModule: this.runtimeModule,
      nice: this.options.nice ?? 10,
      socketPath,
      vmDir: this.vmDir,
      user: this.user,
      restoreFrom: restore?.path,
      restoreEarly: restore?.early,
    };
    // Read once by the process about to start: it need not outlive a crash of the host.
    writeJsonAtomic(initFile, init, 0o600, { durable: false });
    const pooled = this.takePooled();
    const t1 = performance.now();
    const pid = pooled ? pooled.pid : await this.spawnProcess(initFile);
    if (pooled) {
      this.child = pooled.child;
      const adopting = pooled.adopt(initFile, SPAWN_TIMEOUT_MS, () => lastLogLine(this.vmDir));
      // While the process reads its init file and opens the VM's files (the adopt line is on its way): it is in the
      // VM's cgroups before it says it is ready, so before anything is allocated for the guest.
      this.placeInCgroups(pooled.pid);
      await adopting.catch((err: Error) => {
        if (pooled.alive) pooled.child.kill('SIGKILL');
        this.options.cgroups?.release(this.config.name, this.vmDir);
        throw new VmRequestError(err.message);
      });
    }
    const runtime = readJson<ProcessRuntimeFile>(join(this.vmDir, PROCESS_FILES.runtime));
    if (!runtime || runtime.pid !== pid) throw new VmRequestError('the VM process did not record itself');
    if (!pooled) this.placeInCgroups(runtime.pid);
    const t2 = performance.now();
    await this.attach(runtime);
    const t3 = performance.now();
    return {
      'processStartup.prepare': t1 - t0,
      [pooled ? 'processStartup.adopt' : 'processStartup.spawn']: t2 - t1,
      'processStartup.hello': t3 - t2,
    };
  }

  /** A warm process from the pool, if one is idle and still alive. */
  private takePooled(): PooledProcess | undefined {
    const pooled = this.pool?.take();
    if (pooled && !pooled.alive) return undefined;
    return pooled;
  }

  private placeInCgroups(pid: number): void {
    try {
      this.options.cgroups?.place(this.config.name, this.vmDir, pid, this.config.memoryMiB);
    } catch (err) {
      this.options.log?.(`${this.config.name}: runs without its own memory/pids cgroup: ${(err as Error).message}`);
    }
  }

  /** Spawns a process for this VM and resolves with its pid once it listens ("ready" on fd 3). */
  private async spawnProcess(initFile: string): Promise<number> {
    const logFd = openSync(join(this.vmDir, PROCESS_FILES.log), 'a', 0o600);
    const args = [...vmNodeArgs(this.options), vmEntry(), '--init', initFile];
    let child: ChildProcess;
    try {
      // detached: a session of its own, so the daemon's death (or a signal to its process group) leaves it running.
      child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', logFd, logFd, 'pipe'], cwd: this.vmDir });
    } finally {
      closeSync(logFd);
    }
    this.child = child;
    child.unref();
    const ready = child.stdio[3] as NodeJS.ReadableStream & { unref?(): void };
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new VmRequestError(`the VM process did not start within ${SPAWN_TIMEOUT_MS} ms`)),
          SPAWN_TIMEOUT_MS,
        );
        let text = '';
        ready.setEncoding('utf8');
        ready.on('data', (d: string) => {
          text += d;
          if (text.includes('ready\n')) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        child.once('exit', (code, signal) => {
          clearTimeout(timer);
          const last = lastLogLine(this.vmDir);
          reject(
            new VmRequestError(
              `the VM process exited (${signal ?? `code ${code}`}) before it was ready${last ? `: ${last}` : ''}`,
            ),
          );
        });
      });
    } catch (err) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      throw err;
    } finally {
      (ready as unknown as { destroy(): void }).destroy();
    }
    return child.pid!;
  }

  /** Connects to a listening VM process, says hello, and wires console, counters and NICs. */
  async attach(runtime: ProcessRuntimeFile): Promise<HelloReply> {
    this.pid = runtime.pid;
    this.startTime = runtime.startTime;
    this.cpuMeter = new VmCpuMeter(runtime.pid);
    const socket = connect(runtime.socketPath);
    let markClosed!: () => void;
    this.closed = new Promise((r) => (markClosed = r));
    const channel = new ProcessChannel(socket, {
      control: (msg) => this.receive(msg),
      console: (bytes) => this.events.console(bytes),
      nic: (index, frame, offload) => this.nicPorts[index]?.send(frame, true, offload),
      counters: (values) => (this.pushed = values),
      close: (err) => {
        markClosed();
        this.onClosed(channel, err);
      },
    });
    this.channel = channel;
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    // The hello must be the first record on the connection (the process closes one that starts otherwise): until
    // it is answered, no other request (a stats sample, say) may use the channel.
    const hello = (await this.send(
      { type: 'hello', id: 0, name: this.config.name },
      HELLO_TIMEOUT_MS,
      channelTransport(channel),
    )) as unknown as HelloReply;
    if (!hello.ok || hello.name !== this.config.name || hello.pid !== runtime.pid) {
      channel.destroy();
      throw new VmRequestError(`the process on ${runtime.socketPath} is not '${this.config.name}': ${hello.error ?? hello.name}`);
    }
    if (!channel.isOpen) throw new VmRequestError('the VM process closed its channel after its hello');
    this.connected(channelTransport(channel));
    this.guestStarted(hello.status.bootedAt);
    const tids = (hello.tids ?? []).filter((t) => Number.isInteger(t) && t > 0);
    if (tids.length) this.setThreads(tids);
    // Frames between the VM and its networks' workers pass through here (the VM process has no MessagePorts).
    this.nicPorts = (this.resources.nicPorts ?? []).map((port, index) =>
      connectNicPort(port, {
        onFrames: (frames, offloads) => frames.forEach((f, i) => channel.sendNic(index, f, offloads?.[i] ?? undefined)),
      }),
    );
    return hello;
  }

  private onClosed(channel: ProcessChannel, err: Error | undefined): void {
    if (this.channel !== channel) return;
    this.channel = undefined;
    this.transport = undefined;
    for (const p of this.nicPorts) p.close();
    this.nicPorts = [];
    const unexpected = !this.stopping && !this.ended;
    if (unexpected) this.ended = true;
    const reasonOf = unexpected ? this.whyGone(err) : Promise.resolve('the VM process closed its channel');
    // Requests in flight fail with the reason the process ended (found out first: its exit status, note or log).
    void reasonOf.then((reason) =>
      this.transportGone(unexpected ? `the VM process ended: ${reason}` : reason, unexpected ? reason : undefined),
    );
  }

  /** Why the process closed its channel without being asked to: its exit note, its exit status, or its log. */
  private async whyGone(err: Error | undefined): Promise<string> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    const note = takeExitNote(this.vmDir);
    rmSync(join(this.vmDir, PROCESS_FILES.runtime), { force: true });
    this.options.cgroups?.release(this.config.name, this.vmDir);
    if (note?.kind === 'fault') return note.message ?? 'the machine failed';
    if (note?.kind === 'terminated') return 'the VM process was terminated (SIGTERM); its disks were flushed';
    if (child?.signalCode) return `the VM process (pid ${this.pid}) was killed by ${child.signalCode}`;
    const last = lastLogLine(this.vmDir);
    if (child && child.exitCode !== null)
      return `the VM process (pid ${this.pid}) exited with code ${child.exitCode}${last ? `: ${last}` : ''}`;
    // A process killed from outside closes its socket a moment before it is gone.
    if (await this.waitGone(1000))
      return `the VM process (pid ${this.pid}) ended unexpectedly${last ? `; its log ends: ${last}` : ''}`;
    if (sameProcessAlive(this.pid, this.startTime)) {
      // A process that dropped its channel (a malformed record) cannot be driven any more.
      process.kill(this.pid, 'SIGKILL');
      const tail = logTail(this.vmDir, 4);
      return `the VM process (pid ${this.pid}) broke its channel${err ? ` (${err.message})` : ''} and was killed${tail ? `; its log ends: ${tail}` : ''}`;
    }
    return `the VM process (pid ${this.pid}) ended${last ? `; its log ends: ${last}` : ''}`;
  }

  private waitGone(ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    return new Promise((resolve) => {
      const check = (): void => {
        if (!sameProcessAlive(this.pid, this.startTime)) resolve(true);
        else if (Date.now() > end) resolve(false);
        else setTimeout(check, 20);
      };
      check();
    });
  }
}

/** Process mode works where VM processes can be told apart after a daemon restart (/proc) and spawned. */
export function processModeWorks(): boolean {
  return process.platform === 'linux' && processStartTime(process.pid) !== undefined && existsSync(vmEntry());
}
