/**
 * Runs a real `typevisor daemon` process for tests and talks to it over its unix socket with the CLI's client.
 * By default VMs run the toy runtime (fixtures/toy-runtime) so the host, worker and API plumbing can be
 * exercised without booting a guest; `runtime: 'machine'` uses the real machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { builtCliArgs, cliArgs } from '../helpers/paths.js';
import { Client } from '../../src/cli/client.js';
import { sameProcessAlive } from '../../src/vm/process-identity.js';

const ext = extname(fileURLToPath(import.meta.url));
export const TOY_RUNTIME = fileURLToPath(new URL(`./fixtures/toy-runtime${ext}`, import.meta.url));

export interface DaemonHandle {
  home: string;
  /** `<home>/kernels`, passed as --allow-path: where tests put the kernels they name in requests. */
  kernels: string;
  socket: string;
  client: Client;
  proc: ChildProcess;
  stdout: string[];
  stderr: string[];
  /** `listening ...` line fields. */
  addresses: string[];
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface DaemonSpawnOptions {
  home?: string;
  runtime?: 'toy' | 'machine';
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  startTimeoutMs?: number;
  /** --allow-path directories; default `<home>/kernels` (created). */
  allowPaths?: string[];
  /** --vm-mode; default: the daemon's default (process on Linux), or $TYPEVISOR_VM_MODE. */
  vmMode?: 'process' | 'thread';
  /** Run the built CLI (dist/) whatever mode the caller runs in: benchmarks measure what production runs. */
  built?: boolean;
}

/**
 * A file the daemon accepts as a kernel (a RISC-V Linux Image header: "RSC\x05" at 0x38) for the toy runtime,
 * which never boots it.
 */
export function toyKernel(): Buffer {
  const b = Buffer.alloc(4096);
  b.writeUInt32LE(0x20_0000, 8); // text_offset
  b.writeUInt32LE(0x05435352, 0x38); // "RSC\x05"
  return b;
}

export function tempHome(prefix = 'tv-home-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startDaemonProcess(o: DaemonSpawnOptions = {}): Promise<DaemonHandle> {
  const home = o.home ?? tempHome();
  const socket = join(home, 'typevisor.sock');
  const kernels = join(home, 'kernels');
  mkdirSync(kernels, { recursive: true });
  const allow = (o.allowPaths ?? [kernels]).flatMap((dir) => ['--allow-path', dir]);
  const env: NodeJS.ProcessEnv = { ...process.env, ...o.env };
  if ((o.runtime ?? 'toy') === 'toy') env.TYPEVISOR_RUNTIME_MODULE = TOY_RUNTIME;
  else delete env.TYPEVISOR_RUNTIME_MODULE;
  const proc = spawn(
    process.execPath,
    (o.built ? builtCliArgs : cliArgs)(
      'daemon',
      '--home',
      home,
      '--shutdown-timeout',
      '5',
      ...allow,
      ...(o.vmMode ? ['--vm-mode', o.vmMode] : []),
      ...(o.extraArgs ?? []),
    ),
    {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const stdout: string[] = [];
  const stderr: string[] = [];
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
  const addresses = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`daemon did not start within ${o.startTimeoutMs ?? 30_000} ms:\n${stderr.join('')}`)),
      o.startTimeoutMs ?? 30_000,
    );
    let buf = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout.push(d);
      buf += d;
      const m = /^listening (.*)$/m.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!.trim().split(' '));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code} before listening:\n${stderr.join('')}`));
    });
  });
  return {
    home,
    kernels,
    socket,
    client: new Client({ socketPath: socket }),
    proc,
    stdout,
    stderr,
    addresses,
    stop(signal: NodeJS.Signals = 'SIGTERM') {
      return new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode);
        proc.once('exit', (code) => resolve(code));
        proc.kill(signal);
      });
    },
  };
}

/** Every file under `dir` with its size and content hash-ish fingerprint (for "nothing on disk changed"). */
export function snapshotTree(dir: string, skip: (rel: string) => boolean = () => false): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string, rel: string): void => {
    for (const name of readdirSync(d).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (skip(r)) continue;
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) {
        out.set(r + '/', 'dir');
        walk(p, r);
      } else if (st.isFile()) out.set(r, readFileSync(p).toString('base64'));
      else out.set(r, 'special');
    }
  };
  walk(dir, '');
  return out;
}

/** The VM processes (process mode) running for VMs under `home`: name, pid. */
export function vmProcesses(home: string): { name: string; pid: number; startTime: number }[] {
  const vms = join(home, 'vms');
  const out: { name: string; pid: number; startTime: number }[] = [];
  let names: string[];
  try {
    names = readdirSync(vms);
  } catch {
    return out;
  }
  for (const name of names) {
    try {
      const r = JSON.parse(readFileSync(join(vms, name, 'vm-process.json'), 'utf8')) as { pid: number; startTime: number };
      if (sameProcessAlive(r.pid, r.startTime)) out.push({ name, pid: r.pid, startTime: r.startTime });
    } catch {
      /* no VM process */
    }
  }
  return out;
}

/**
 * The idle VM processes of a daemon's warm pool (process mode): its children titled `typevisor-vm (pool)` (an
 * adopted one's title names its VM).
 */
export function pooledProcesses(daemonPid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== daemonPid) continue;
      // The title overwrites the command line.
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')[0] === 'typevisor-vm (pool)') out.push(Number(entry));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** Removes a test home, first killing VM processes a killed daemon left running there (they outlive it). */
export function removeHome(home: string): void {
  for (const p of vmProcesses(home)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  rmSync(home, { recursive: true, force: true });
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  everyMs = 100,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * p50/p99 of `n` sequential calls. The files that measure latency are `// @exclusive` (scripts/test.mjs runs
 * them alone), so one round is the measurement: no retry, no best-of.
 */
export async function latencyPercentiles(
  fn: () => Promise<unknown>,
  n = 400,
): Promise<{ p50: number; p99: number; rounds: string[] }> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const p50 = times[Math.floor(n * 0.5)]!;
  const p99 = times[Math.floor(n * 0.99)]!;
  return { p50, p99, rounds: [`p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms over ${n} requests`] };
}
