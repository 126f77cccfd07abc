/**
 * Network benchmark: typevisor's user-mode networking against qemu-system-riscv64's `-netdev user` (slirp) with
 * virtio-net-device, on the same kernel and initramfs, in the same run:
 *   - VM → host TCP throughput (guest `nc` to a sink on the host's loopback through the gateway 10.0.2.2);
 *   - host → VM TCP throughput through a published port (hostfwd in qemu);
 *   - VM ↔ VM TCP throughput (typevisor: two VMs on one network; qemu: two VMs joined by `-netdev socket`);
 *   - ping round trip to the gateway.
 * Prints both figures and their ratio, and typevisor's bytes per guest instruction.
 *
 *   npx tsx bench/net/index.ts [--mib 32] [--skip-qemu]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect, type AddressInfo, type Server } from 'node:net';
import { parseArgs } from 'node:util';
import type { VmView } from '../../src/host/actions.js';
import { guestArtifacts } from '../../src/guests/index.js';
import { Expect } from '../../test/helpers/console.js';
import { runCli } from '../../test/helpers/cli.js';
import { removeHome, startDaemonProcess, waitFor, type DaemonHandle } from '../../test/host/daemon-harness.js';

const { values } = parseArgs({ options: { mib: { type: 'string', default: '32' }, 'skip-qemu': { type: 'boolean' } } });
const MIB = Number(values.mib);
const BYTES = MIB * 2 ** 20;
const g = guestArtifacts();
const APPEND = 'console=ttyS0';

interface Figures {
  vmToHost: number; // MiB/s
  hostToVm: number;
  vmToVm: number;
  pingMs: number;
  bytesPerInstruction?: number;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A TCP sink on the host's loopback: resolves with the bytes and the seconds from first to last byte. */
function sink(): { port: Promise<number>; done: Promise<{ bytes: number; seconds: number }>; server: Server } {
  let resolveDone!: (v: { bytes: number; seconds: number }) => void;
  const done = new Promise<{ bytes: number; seconds: number }>((r) => (resolveDone = r));
  const server = createServer((sock) => {
    let bytes = 0;
    let first = 0;
    sock.on('data', (c: Buffer) => {
      if (bytes === 0) first = performance.now();
      bytes += c.length;
    });
    sock.on('close', () => resolveDone({ bytes, seconds: (performance.now() - first) / 1000 }));
  });
  const port = new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)));
  return { port, done, server };
}

/** Sends BYTES to host:port and resolves with the seconds until the peer closed. */
function push(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    const t0 = performance.now();
    const sock = connect(port, '127.0.0.1', () => {
      let left = BYTES;
      const write = (): void => {
        while (left > 0) {
          left -= chunk.length;
          if (!sock.write(chunk)) return void sock.once('drain', write);
        }
        sock.end();
      };
      write();
    });
    sock.on('error', reject);
    sock.resume();
    sock.on('close', () => resolve((performance.now() - t0) / 1000));
  });
}

const mibps = (bytes: number, seconds: number) => bytes / 2 ** 20 / seconds;
const pingAvg = (out: string) => {
  const m = /min\/avg\/max = [\d.]+\/([\d.]+)\//.exec(out);
  if (!m) throw new Error(`no ping summary in:\n${out}`);
  return Number(m[1]);
};

// ---- typevisor ---------------------------------------------------------------------------------------------

async function typevisor(): Promise<Figures> {
  const d: DaemonHandle = await startDaemonProcess({ runtime: 'machine' });
  const cli = (...args: string[]) => runCli(d.home, args);
  const exec = async (vm: string, script: string) => {
    const r = await cli('exec', vm, '--timeout', '600', '--', 'sh', '-c', script);
    if (r.status !== 0) throw new Error(`${vm}: ${script}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  try {
    const fwd = await freePort();
    const base = ['--kernel', g.kernel, '--initrd', g.initramfs, '--cmdline', APPEND, '--memory', '256'];
    await cli('create', 'bench-a', ...base, '--publish', `${fwd}:5000`, '--start');
    await cli('create', 'bench-b', ...base, '--start');
    for (const vm of ['bench-a', 'bench-b'])
      await waitFor(
        `${vm} agent`,
        async () => ((await cli('exec', vm, '--timeout', '120', '--', 'true')).status === 0 ? true : undefined),
        600_000,
        1000,
      );
    const ipB = await waitFor(
      'bench-b lease',
      async () => (await d.client.json<VmView>('GET', '/vms/bench-b')).addresses[0]?.ip,
      60_000,
    );
    await waitFor('bench-a lease', async () => (await d.client.json<VmView>('GET', '/vms/bench-a')).addresses[0]?.ip, 60_000);
    const instret = async () => (await d.client.json<VmView>('GET', '/vms/bench-a')).stats!.instret;

    const s = sink();
    const i0 = await instret();
    await exec('bench-a', `dd if=/dev/zero bs=65536 count=${MIB * 16} 2>/dev/null | nc 10.0.2.2 ${await s.port}`);
    const up = await s.done;
    const i1 = await instret();
    s.server.close();

    await exec('bench-a', 'nc -l -p 5000 >/dev/null 2>&1 </dev/null &');
    await new Promise((r) => setTimeout(r, 500));
    const downSeconds = await push(fwd);

    await exec('bench-b', 'nc -l -p 5001 >/dev/null 2>&1 </dev/null &');
    const empty0 = performance.now();
    await exec('bench-a', 'true');
    const execOverhead = (performance.now() - empty0) / 1000;
    const v0 = performance.now();
    await exec('bench-a', `dd if=/dev/zero bs=65536 count=${MIB * 16} 2>/dev/null | nc ${ipB} 5001`);
    const vmSeconds = (performance.now() - v0) / 1000 - execOverhead;

    const ping = await exec('bench-a', 'ping -c 10 -i 0.2 10.0.2.2');
    return {
      vmToHost: mibps(up.bytes, up.seconds),
      hostToVm: mibps(BYTES, downSeconds),
      vmToVm: mibps(BYTES, vmSeconds),
      pingMs: pingAvg(ping),
      bytesPerInstruction: up.bytes / (i1 - i0),
    };
  } finally {
    await d.stop();
    removeHome(d.home);
  }
}

// ---- qemu ---------------------------------------------------------------------------------------------------

class QemuGuest {
  readonly proc: ChildProcess;
  readonly io: Expect;
  private n = 0;
  constructor(extra: string[]) {
    this.proc = spawn(
      'qemu-system-riscv64',
      ['-M', 'virt', '-m', '256', '-nographic', '-kernel', g.kernel, '-initrd', g.initramfs, '-append', APPEND, ...extra],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.io = new Expect([this.proc.stdout!, this.proc.stderr!], this.proc.stdin!);
  }
  async ready(): Promise<void> {
    await this.io.waitFor(g.marker, 300_000);
  }
  /** Runs a shell command and returns its output (between two markers typed as arithmetic). */
  async run(cmd: string, timeoutMs = 600_000): Promise<string> {
    const k = ++this.n;
    this.proc.stdin!.write(`echo BEGIN-$((${k}+1000)); ${cmd}; echo END-$((${k}+1000))\n`);
    await this.io.waitFor(`BEGIN-${k + 1000}`, timeoutMs);
    const m = await this.io.waitFor(new RegExp(`([\\s\\S]*?)END-${k + 1000}`), timeoutMs);
    return m[1]!;
  }
  stop(): void {
    this.proc.kill('SIGKILL');
  }
}

/** Configures the NIC with the given MAC: DHCP on slirp's network, or a static address on the socket link. */
const ifaceOf = (mac: string) => `$(grep -l ${mac} /sys/class/net/*/address | cut -d/ -f5)`;

async function qemu(): Promise<Figures> {
  const fwd = await freePort();
  const link = await freePort();
  const a = new QemuGuest([
    '-netdev',
    `user,id=u0,hostfwd=tcp:127.0.0.1:${fwd}-:5000`,
    '-device',
    'virtio-net-device,netdev=u0,mac=52:54:00:00:01:01',
    '-netdev',
    `socket,id=s0,listen=127.0.0.1:${link}`,
    '-device',
    'virtio-net-device,netdev=s0,mac=52:54:00:00:02:01',
  ]);
  await new Promise((r) => setTimeout(r, 300));
  const b = new QemuGuest([
    '-netdev',
    `socket,id=s0,connect=127.0.0.1:${link}`,
    '-device',
    'virtio-net-device,netdev=s0,mac=52:54:00:00:02:02',
  ]);
  try {
    await Promise.all([a.ready(), b.ready()]);
    await a.run(`U=${ifaceOf('52:54:00:00:01:01')}; ip link set $U up; udhcpc -i $U -n -q >/dev/null 2>&1; ip -4 addr show $U`);
    await a.run(`S=${ifaceOf('52:54:00:00:02:01')}; ip addr add 192.168.77.1/24 dev $S; ip link set $S up`);
    await b.run(`S=${ifaceOf('52:54:00:00:02:02')}; ip addr add 192.168.77.2/24 dev $S; ip link set $S up`);

    const s = sink();
    await a.run(`dd if=/dev/zero bs=65536 count=${MIB * 16} 2>/dev/null | nc 10.0.2.2 ${await s.port}`);
    const up = await s.done;
    s.server.close();

    await a.run('nc -l -p 5000 >/dev/null 2>&1 </dev/null &');
    await new Promise((r) => setTimeout(r, 500));
    const downSeconds = await push(fwd);

    await b.run('nc -l -p 5001 >/dev/null 2>&1 </dev/null &');
    const v0 = performance.now();
    await a.run(`dd if=/dev/zero bs=65536 count=${MIB * 16} 2>/dev/null | nc 192.168.77.2 5001`);
    const vmSeconds = (performance.now() - v0) / 1000;

    const ping = await a.run('ping -c 10 -i 0.2 10.0.2.2');
    return {
      vmToHost: mibps(up.bytes, up.seconds),
      hostToVm: mibps(BYTES, downSeconds),
      vmToVm: mibps(BYTES, vmSeconds),
      pingMs: pingAvg(ping),
    };
  } finally {
    a.stop();
    b.stop();
  }
}

const tv = await typevisor();
const q = values['skip-qemu'] ? undefined : await qemu();
console.log(`\nnetwork, ${MIB} MiB per transfer (typevisor user-mode NAT vs qemu -netdev user, same kernel and initramfs):`);
const rows: [string, number, number | undefined, string, boolean][] = [
  ['VM → host TCP', tv.vmToHost, q?.vmToHost, 'MiB/s', true],
  ['host → VM TCP (fwd)', tv.hostToVm, q?.hostToVm, 'MiB/s', true],
  ['VM ↔ VM TCP', tv.vmToVm, q?.vmToVm, 'MiB/s', true],
  ['ping gateway avg', tv.pingMs, q?.pingMs, 'ms', false],
];
for (const [name, t, qv, unit, higherBetter] of rows) {
  const ratio =
    qv === undefined ? '' : `   typevisor/qemu ${(higherBetter ? t / qv : qv / t).toFixed(2)}x (>1 = typevisor better)`;
  console.log(
    `  ${name.padEnd(22)} typevisor ${t.toFixed(2).padStart(8)} ${unit}${qv === undefined ? '' : `   qemu ${qv.toFixed(2).padStart(8)} ${unit}`}${ratio}`,
  );
}
if (tv.bytesPerInstruction)
  console.log(`  typevisor VM → host: ${tv.bytesPerInstruction.toFixed(4)} bytes per guest instruction`);
process.exit(0);
