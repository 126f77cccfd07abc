/**
 * Shared setup for the real-guest network tests (guest-network, guest-limits, guest-hostile): a daemon running
 * real machines, the `typevisor` CLI against it, guest commands through `typevisor exec`, booting a VM up to its
 * DHCP lease, and a host-side TCP sink that timestamps every byte a guest streams to it through the NAT, so
 * throughput is measured on the host in any time window.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { get as httpGet } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { VmView } from '../../src/host/actions.js';
import { startDaemonProcess, waitFor, type DaemonHandle } from '../host/daemon-harness.js';
import { runCli, type CliResult } from '../helpers/cli.js';

export const MiB = 1024 * 1024;
/** The host as the guests on a `nat` network see it (the gateway; TCP to it reaches 127.0.0.1). */
export const HOST_FROM_GUEST = '10.0.2.2';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export function fetchText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer from ${url} in 30 s`)));
  });
}

/** A daemon with the real machine runtime, and the CLI and guest commands bound to it. */
export class GuestDaemon {
  private constructor(readonly d: DaemonHandle) {}

  /**
   * `engine: 'interpreter'` runs the guests with TYPEVISOR_JIT=0: for throughput comparisons between neighbours that
   * were calibrated with guests, not the host's network path, as the bottleneck (see guest-limits, guest-hostile).
   */
  static async start(opts: { vmMode?: 'process' | 'thread'; engine?: 'interpreter' } = {}): Promise<GuestDaemon> {
    const env = opts.engine === 'interpreter' ? { TYPEVISOR_JIT: '0' } : {};
    return new GuestDaemon(await startDaemonProcess({ runtime: 'machine', vmMode: opts.vmMode, env }));
  }

  cli(...args: string[]): Promise<CliResult> {
    return runCli(this.d.home, args);
  }

  /** `typevisor exec NAME -i -- sh -c SCRIPT` with `input` on the command's stdin. */
  execWithInput(vm: string, script: string, input: Uint8Array, timeoutSeconds = 300): Promise<CliResult> {
    return runCli(this.d.home, ['exec', vm, '-i', '--timeout', String(timeoutSeconds), '--', 'sh', '-c', script], { input });
  }

  /** Runs a shell script in the guest; fails the test with the guest's output when it exits non-zero. */
  async guest(vm: string, script: string, timeoutSeconds = 300): Promise<string> {
    const r = await this.cli('exec', vm, '--timeout', String(timeoutSeconds), '--', 'sh', '-c', script);
    assert.equal(r.status, 0, `${vm}: '${script}' exited ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r.stdout;
  }

  /** `typevisor create NAME ARGS... --start`, asserting it worked. */
  async create(vm: string, ...args: string[]): Promise<void> {
    const r = await this.cli('create', vm, ...args, '--start');
    assert.equal(r.status, 0, `create ${vm}: ${r.stderr}`);
  }

  /** Waits until the VM's agent answers and its first NIC has a DHCP lease; returns that address. */
  async bootWithAddress(vm: string): Promise<string> {
    // The ready marker comes after init started the agent: a request sent earlier could reach the port before
    // the agent listens on it.
    await waitFor(
      `${vm} boot`,
      async () =>
        (await this.d.client.text(`/vms/${vm}/console.log`)).toString('latin1').includes('typevisor-guest: ready')
          ? true
          : undefined,
      600_000,
      500,
    );
    await waitFor(
      `${vm} agent`,
      async () => ((await this.cli('exec', vm, '--timeout', '120', '--', 'true')).status === 0 ? true : undefined),
      600_000,
      1000,
    );
    return waitFor(`${vm} DHCP lease`, async () => (await this.vm(vm)).addresses[0]?.ip, 120_000, 500);
  }

  vm(name: string): Promise<VmView> {
    return this.d.client.json<VmView>('GET', `/vms/${name}`);
  }

  /**
   * Starts `nc HOST PORT < /dev/zero` in the background in the guest: it streams until the host closes the
   * connection (ByteSink.dropAll), then exits on the broken pipe.
   */
  async streamToHost(vm: string, port: number): Promise<void> {
    await this.guest(vm, `nc ${HOST_FROM_GUEST} ${port} </dev/zero >/dev/null 2>&1 &`);
  }
}

/** Cumulative bytes a sink has received, sampled at each arrival (performance.now() milliseconds). */
export class ByteSink {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly times: number[] = [];
  private readonly totals: number[] = [];
  private total = 0;
  connections = 0;

  private constructor(server: Server) {
    this.server = server;
  }

  static async listen(): Promise<ByteSink> {
    const server = createServer();
    const sink = new ByteSink(server);
    server.on('connection', (socket) => sink.accept(socket));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    return sink;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get bytes(): number {
    return this.total;
  }

  private accept(socket: Socket): void {
    this.connections++;
    this.sockets.add(socket);
    socket.on('data', (chunk: Buffer) => {
      this.total += chunk.length;
      this.times.push(performance.now());
      this.totals.push(this.total);
    });
    socket.on('error', () => {});
    socket.on('close', () => this.sockets.delete(socket));
  }

  /** Bytes received by time `t` (the total at the last arrival at or before t). */
  bytesAt(t: number): number {
    let lo = 0;
    let hi = this.times.length - 1;
    if (hi < 0 || this.times[0]! > t) return 0;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.times[mid]! <= t) lo = mid;
      else hi = mid - 1;
    }
    return this.totals[lo]!;
  }

  /** MiB/s received between two instants. */
  rate(from: number, to: number): number {
    return (this.bytesAt(to) - this.bytesAt(from)) / MiB / ((to - from) / 1000);
  }

  /** MiB/s in consecutive windows of `stepMs` from `from` to `to`. */
  windows(from: number, to: number, stepMs = 1000): number[] {
    const out: number[] = [];
    for (let t = from; t + stepMs <= to + 1; t += stepMs) out.push(this.rate(t, t + stepMs));
    return out;
  }

  /** Waits until bytes flow (a guest connected and sent something). */
  async flowing(what: string, timeoutMs = 60_000): Promise<void> {
    const start = this.total;
    await waitFor(`${what}: bytes at the host sink`, () => (this.total > start ? true : undefined), timeoutMs, 50);
  }

  /** Closes every connection (the guest's nc then exits), keeping the listener. */
  dropAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  close(): Promise<void> {
    this.dropAll();
    return new Promise((r) => this.server.close(() => r()));
  }
}

export const fmtRates = (rates: number[]) => rates.map((r) => r.toFixed(2)).join(' ');
