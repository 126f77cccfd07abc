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
import { cliArgs } from '../helpers/paths.js';
import { Client } from '../../src/cli/client.js';

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
    cliArgs('daemon', '--home', home, '--shutdown-timeout', '5', ...allow, ...(o.extraArgs ?? [])),
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

export function removeHome(home: string): void {
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
