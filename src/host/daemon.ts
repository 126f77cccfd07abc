/**
 * The daemon: owns the state directory, runs the Hypervisor, serves the API on a unix socket (mode 0600, no
 * token: the file permissions are the authentication) and optionally on TCP with a bearer token generated on
 * first start and stored mode 0600.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { writeFileAtomic, writeJsonAtomic } from './atomic.js';
import { homeLayout, type HomeLayout } from './home.js';
import { Hypervisor } from './hypervisor.js';
import { daemonPathPolicy } from './path-policy.js';
import { guestsCacheDir } from '../guests/paths.js';
import type { Engine } from './engine.js';
import { buildApi } from '../api/server.js';
import { WorkerEngine } from '../vm/worker-engine.js';
import { ProcessEngine, processModeWorks } from '../vm/process-engine.js';
import { VmProcessUsers } from './vm-process-user.js';
import { VmProcessCgroups } from './vm-process-cgroup.js';
import type { Logger } from 'pino';
import { HostError } from './errors.js';
import type { MechanismChoice } from './cpu/probe.js';
import type { MemoryBudget } from './memory/budget.js';
import { fixMmapThreshold, startMallocTrim } from './memory/malloc.js';

export type ListenSpec = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export class ListenSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ListenSpecError';
  }
}

export function parseListen(s: string): ListenSpec {
  if (s.startsWith('unix:')) {
    const path = s.slice(5);
    if (!path.startsWith('/')) throw new ListenSpecError(`unix socket path must be absolute: ${s}`);
    return { kind: 'unix', path };
  }
  const m = /^tcp:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
  if (m) {
    const port = Number(m[2]);
    if (port > 65535) throw new ListenSpecError(`bad port in ${s}`);
    return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port };
  }
  throw new ListenSpecError(`--listen takes unix:/path or tcp:HOST:PORT, got ${JSON.stringify(s)}`);
}

export function formatListen(l: ListenSpec): string {
  return l.kind === 'unix' ? `unix:${l.path}` : `tcp:${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
}

export interface DaemonOptions {
  home: string;
  listen?: ListenSpec[];
  engine?: Engine;
  /** Module exporting createRuntime for the built-in engine (tests and development). */
  runtimeModule?: string;
  shutdownTimeoutMs?: number;
  log?: (line: string) => void;
  /** PEM certificate chain and key: TCP listeners then serve HTTPS/WSS (the unix socket stays plain). */
  tls?: { cert: string; key: string };
  /** Directories API clients may name kernels, initrds and firmware from, besides <home>/images and the guest cache. */
  allowPaths?: string[];
  /** Structured logger: API requests and VM events go here, one JSON line each, with the VM name as a field. */
  logger?: Logger;
  /** CPU enforcement: 'auto' (best available) or a named mechanism. */
  cpuMechanism?: MechanismChoice;
  /** Subnet of the 'default' NAT network. */
  defaultSubnet?: string;
  /** Host memory budget and overcommit (default: host RAM minus a reserve, 1.0). */
  memoryBudget?: MemoryBudget;
  /**
   * VM workers (thread mode) or VM processes (process mode) the built-in engine keeps started ahead of need
   * (src/host/worker-pool.ts); default 1 from the CLI, 0 here. When on, the daemon also keeps one network worker
   * ready.
   */
  warmWorkers?: number;
  /** How new VMs run: a process each (the default on Linux, see defaultVmMode) or a worker thread each. */
  vmMode?: VmMode;
  /** First uid of the range VM processes drop to when the daemon is root (src/host/vm-process-user.ts). */
  vmUidBase?: number;
  /** On close (SIGTERM), VM processes keep running for the next daemon instead of being stopped. */
  keepVmsOnExit?: boolean;
}

export type VmMode = 'process' | 'thread';
export const VM_MODES: readonly VmMode[] = ['process', 'thread'];

/**
 * Process mode where it works (Linux with /proc; processModeWorks): crash isolation, VMs that outlive the daemon,
 * a uid and cgroups of their own per VM. With its warm pool of VM processes a start costs about what a thread
 * mode start does, and memory per VM is about the same (docs/performance.md "VM modes"). Elsewhere thread mode;
 * --vm-mode thread or TYPEVISOR_VM_MODE=thread choose it anywhere.
 */
export function defaultVmMode(): VmMode {
  return processModeWorks() ? 'process' : 'thread';
}

export interface RunningDaemon {
  layout: HomeLayout;
  hypervisor: Hypervisor;
  /** Where the API actually listens (TCP port 0 resolved). */
  addresses: ListenSpec[];
  token: string;
  close(): Promise<void>;
}

export class DaemonLockError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DaemonLockError';
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The API token, created on first start (32 random bytes, hex, file mode 0600). */
export function ensureToken(file: string): string {
  if (existsSync(file)) {
    const t = readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f]{64}$/.test(t)) {
      chmodSync(file, 0o600);
      return t;
    }
  }
  const t = randomBytes(32).toString('hex');
  writeFileAtomic(file, t + '\n', 0o600);
  return t;
}

export async function startDaemon(opts: DaemonOptions): Promise<RunningDaemon> {
  const layout = homeLayout(opts.home);
  const log = opts.log ?? (() => {});
  mkdirSync(layout.root, { recursive: true, mode: 0o700 });
  chmodSync(layout.root, 0o700);

  // One daemon per home: a live pid in daemon.pid means another daemon owns it.
  if (existsSync(layout.pidFile)) {
    const pid = Number(readFileSync(layout.pidFile, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
      throw new DaemonLockError(`another daemon (pid ${pid}) owns ${layout.root}`);
    }
  }
  writeFileAtomic(layout.pidFile, `${process.pid}\n`, 0o600);
  const token = ensureToken(layout.tokenFile);

  // Before any VM allocates guest RAM: chunks the guests give back must leave the process (malloc.ts).
  if (!fixMmapThreshold()) log('memory: could not fix the malloc mmap threshold; freed guest RAM may stay in RSS');
  // What idle VMs free in small blocks (decoded pages, compiler zones) stays in the malloc arenas otherwise.
  const stopMallocTrim = startMallocTrim();
  if (!stopMallocTrim) log('memory: no malloc_trim; memory the VMs free in small blocks may stay in RSS');
  const vmMode = opts.vmMode ?? defaultVmMode();
  if (vmMode === 'process' && !processModeWorks())
    throw new HostError('INVALID_CONFIG', 'process mode needs Linux with /proc; use --vm-mode thread');
  // VM processes an earlier daemon left running are taken over whichever mode new VMs use.
  let cgroups: VmProcessCgroups | undefined;
  if (processModeWorks()) {
    const probed = VmProcessCgroups.probe();
    if (typeof probed === 'string') log(`VM processes get no cgroup of their own (memory and pids limits): ${probed}`);
    else {
      cgroups = probed;
      log(`VM processes get cgroup v${probed.version} memory and pids groups of their own`);
      cgroups.sweep();
    }
  }
  let users: VmProcessUsers | undefined;
  let vmProcessUser = "the daemon's";
  if (processModeWorks()) {
    const probed = VmProcessUsers.probe(opts.vmUidBase);
    if (typeof probed === 'string') {
      vmProcessUser = `the daemon's (${probed})`;
      log(`VM processes keep the daemon's user: ${probed}`);
    } else {
      users = probed;
      vmProcessUser = `a uid of its own per VM, from ${probed.base} (no groups, no capabilities, no new privileges)`;
      log(`VM processes drop to a uid of their own from ${users.base} (vm-process-user.json in each VM's folder)`);
    }
  }
  const processEngine = processModeWorks()
    ? new ProcessEngine({
        runtimeModule: opts.runtimeModule,
        cgroups,
        users,
        log,
        // Only the engine that starts new VMs keeps warm processes (a thread-mode daemon uses this one to reattach).
        warmProcesses: vmMode === 'process' && !opts.engine ? opts.warmWorkers : 0,
        poolLogFile: join(layout.root, 'vm-pool.log'),
      })
    : undefined;
  const engine =
    opts.engine ??
    (vmMode === 'process'
      ? processEngine!
      : new WorkerEngine({ runtimeModule: opts.runtimeModule, warmWorkers: opts.warmWorkers, log }));
  log(`VMs run as ${opts.engine ? `the ${engine.name} engine's` : vmMode === 'process' ? 'processes' : 'worker threads'}`);
  const pathPolicy = daemonPathPolicy(layout.imagesDir, guestsCacheDir(), opts.allowPaths);
  log(`API clients may name boot files under: ${pathPolicy.allowed.join(', ')}`);
  const hypervisor = new Hypervisor({
    home: layout,
    engine,
    shutdownTimeoutMs: opts.shutdownTimeoutMs,
    log,
    cpuMechanism: opts.cpuMechanism,
    pathPolicy,
    defaultSubnet: opts.defaultSubnet,
    memoryBudget: opts.memoryBudget,
    reattachEngine: opts.engine?.reattach ? opts.engine : processEngine,
    keepVmsOnExit: opts.keepVmsOnExit,
    vmProcessUser,
    // One network worker ready is enough: networks start one at a time, and the pool refills behind each.
    warmNetworkWorkers: opts.warmWorkers ? 1 : 0,
  });
  const logger = opts.logger;
  if (logger) {
    hypervisor.events.subscribe((e) => {
      const { reason, type, id, time: _time, ...fields } = e;
      void _time;
      logger.info({ event: type, eventId: id, ...fields }, reason);
    });
  }
  await hypervisor.init();

  const listens = opts.listen?.length ? opts.listen : [{ kind: 'unix', path: layout.socket } as ListenSpec];
  const apps: FastifyInstance[] = [];
  const addresses: ListenSpec[] = [];
  const sockets: string[] = [];
  try {
    for (const l of listens) {
      const tcp = l.kind === 'tcp';
      const app = await buildApi({
        channel: hypervisor,
        token: tcp ? token : undefined,
        tls: tcp ? opts.tls : undefined,
        log,
        logger,
      });
      apps.push(app);
      if (l.kind === 'unix') {
        // A socket file left by a dead daemon would make listen fail with EADDRINUSE.
        if (existsSync(l.path)) unlinkSync(l.path);
        const oldMask = process.umask(0o177);
        try {
          await app.listen({ path: l.path });
        } finally {
          process.umask(oldMask);
        }
        chmodSync(l.path, 0o600);
        sockets.push(l.path);
        addresses.push(l);
      } else {
        await app.listen({ host: l.host, port: l.port });
        const addr = app.server.address();
        const port = addr && typeof addr === 'object' ? addr.port : l.port;
        addresses.push({ kind: 'tcp', host: l.host, port });
      }
    }
  } catch (err) {
    stopMallocTrim?.();
    await Promise.all(apps.map((a) => a.close().catch(() => {})));
    await hypervisor.close();
    throw err;
  }
  writeJsonAtomic(
    layout.root + '/daemon.json',
    { pid: process.pid, listen: addresses.map(formatListen), startedAt: new Date().toISOString() },
    0o600,
  );
  log(
    `typevisor daemon ${process.pid}: home ${layout.root}, listening on ${addresses.map(formatListen).join(', ')}` +
      (opts.tls ? ' (TCP with TLS)' : ''),
  );

  let closing: Promise<void> | undefined;
  return {
    layout,
    hypervisor,
    addresses,
    token,
    close() {
      closing ??= (async () => {
        stopMallocTrim?.();
        await Promise.all(apps.map((a) => a.close().catch(() => {})));
        await hypervisor.close();
        for (const s of sockets) if (existsSync(s)) unlinkSync(s);
        try {
          if (readFileSync(layout.pidFile, 'utf8').trim() === String(process.pid)) unlinkSync(layout.pidFile);
        } catch {
          /* already gone */
        }
      })();
      return closing;
    },
  };
}
