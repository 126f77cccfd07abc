/**
 * Network benchmark: typevisor's user-mode networking against qemu-system-riscv64's `-netdev user` (slirp) with
 * virtio-net-device on `-M virt`, on the same kernel and initramfs, in the same run:
 *   - VM → host TCP (guest `nc` to a sink on the host's loopback through the gateway 10.0.2.2), timed by the sink
 *     from its first byte to its last;
 *   - host → VM TCP through a published port (qemu: hostfwd), timed by the guest from its first byte to its last;
 *   - VM ↔ VM TCP (typevisor: two VMs on the default network; qemu: two VMs joined by `-netdev socket` on
 *     127.0.0.1 with static addresses), timed by the receiving guest;
 *   - ping round trips to the gateway and to the other VM.
 * The guests run the same shell (guest-scripts.ts) on both hypervisors. Prints both figures, their ratio, the
 * load average, and bytes per guest instruction (typevisor from its instret counter; qemu with --qemu-insns,
 * which counts with a TCG plugin in a separate, slower pass).
 *
 *   npx tsx bench/net/index.ts [--mib 32] [--runs 1] [--skip-qemu | --skip-typevisor] [--qemu-insns] [--offload off]
 *
 * `--offload off` gives typevisor's NICs `offload=off` (no virtio-net checksum/TSO offloads), to measure them.
 *
 * With several runs (typevisor and qemu alternate, so both see the same neighbours) each figure is the best.
 */
import { createServer, connect, type AddressInfo, type Server } from 'node:net';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import type { VmView } from '../../src/host/actions.js';
import { guestArtifacts } from '../../src/guests/index.js';
import { runCli } from '../../test/helpers/cli.js';
import { removeHome, startDaemonProcess, waitFor, type DaemonHandle } from '../../test/host/daemon-harness.js';
import { listeningScript, parseReceipt, pingAverageMs, receiveScript, sendScript, type Receipt } from './guest-scripts.js';
import { QemuGuest } from './qemu-guest.js';
import { InsnCounter } from './qemu-insns.js';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '32' },
    runs: { type: 'string', default: '1' },
    'skip-qemu': { type: 'boolean' },
    'skip-typevisor': { type: 'boolean' },
    'qemu-insns': { type: 'boolean' },
    offload: { type: 'string', default: 'on' },
  },
});
if (values.offload !== 'on' && values.offload !== 'off') throw new Error(`--offload must be on or off, not ${values.offload}`);
const MIB = Number(values.mib);
if (!Number.isInteger(MIB) || MIB < 1) throw new Error(`--mib must be a positive integer, not ${values.mib}`);
const BYTES = MIB * 2 ** 20;
const RUNS = Number(values.runs);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`--runs must be a positive integer, not ${values.runs}`);
const g = guestArtifacts();
const APPEND = 'console=ttyS0';
const FWD_GUEST_PORT = 5000;
const VM_PORT = 5001;
const SLIRP_GATEWAY = '10.0.2.2';

interface Figures {
  /** MiB/s, each timed at the receiver from its first byte to its last. */
  vmToHost: number;
  hostToVm: number;
  vmToVm: number;
  /** host → VM timed on the host from connect to the guest's report that it has every byte (MiB/s). */
  hostToVmHostTimed: number;
  pingGatewayMs: number;
  pingVmMs: number;
  /** Bytes moved per guest instruction retired by the VMs involved, per transfer. */
  bytesPerInsn?: { vmToHost: number; hostToVm: number; vmToVm: number };
}

const mibps = (bytes: number, seconds: number): number => bytes / 2 ** 20 / seconds;
const rate = (r: Receipt): number => mibps(r.bytes, r.seconds);

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A TCP sink on the host's loopback: resolves with the bytes and the seconds from its first byte to its last. */
function sink(): { port: Promise<number>; done: Promise<Receipt>; server: Server } {
  let resolveDone!: (v: Receipt) => void;
  const done = new Promise<Receipt>((r) => (resolveDone = r));
  const server = createServer((sock) => {
    let bytes = 0;
    let first = 0;
    let last = 0;
    sock.on('data', (c: Buffer) => {
      last = performance.now();
      if (bytes === 0) first = last;
      bytes += c.length;
    });
    sock.on('close', () => resolveDone({ bytes, seconds: (last - first) / 1000 }));
  });
  const port = new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)));
  return { port, done, server };
}

/**
 * Sends BYTES to 127.0.0.1:port; resolves with the host time at connect. Half-open is allowed: the guest's nc
 * (stdin /dev/null) shuts its sending side at once, and a socket that then ends itself silently drops what it
 * had not yet written (qemu's guest was 256 KiB short of 4 MiB that way).
 */
function push(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    const sock = connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => {
      const t0 = performance.now();
      let left = BYTES;
      const write = (): void => {
        while (left > 0) {
          left -= chunk.length;
          if (!sock.write(chunk)) return void sock.once('drain', write);
        }
        sock.end();
      };
      write();
      sock.on('close', () => resolve(t0));
    });
    sock.on('error', reject);
    sock.resume();
  });
}

/** Reports whether the other hypervisor's figure is better, and by how much. */
function ratio(t: number, q: number, higherIsBetter: boolean): string {
  const r = t / q;
  const better = higherIsBetter ? r >= 1 : r <= 1;
  const factor = r >= 1 ? r : 1 / r;
  return `typevisor/qemu ${r.toFixed(2)} (${better ? 'typevisor' : 'qemu'} ${factor.toFixed(2)}x better)`;
}

// ---- typevisor ---------------------------------------------------------------------------------------------

interface ExecReply {
  exitCode: number;
  stdout: string;
  stderr: string;
}

class DaemonVm {
  constructor(
    private readonly d: DaemonHandle,
    readonly name: string,
  ) {}

  /** Runs a shell script through the guest agent (the REST API, no CLI process in the way). */
  async sh(script: string, timeoutMs = 600_000): Promise<string> {
    const body = { argv: ['sh', '-c', script], timeoutMs };
    const r = await this.d.client.json<ExecReply>('POST', `/vms/${this.name}/exec`, body, timeoutMs + 30_000);
    const out = Buffer.from(r.stdout, 'base64').toString();
    if (r.exitCode !== 0)
      throw new Error(`${this.name}: ${script}: exit ${r.exitCode}\n${out}\n${Buffer.from(r.stderr, 'base64').toString()}`);
    return out;
  }

  async instret(): Promise<number> {
    const v = await this.d.client.json<VmView>('GET', `/vms/${this.name}`);
    if (!v.stats) throw new Error(`${this.name} has no stats`);
    return v.stats.instret;
  }

  async ip(): Promise<string> {
    return waitFor(
      `${this.name} lease`,
      async () => (await this.d.client.json<VmView>('GET', `/vms/${this.name}`)).addresses[0]?.ip,
      120_000,
    );
  }
}

async function typevisor(): Promise<Figures> {
  const d = await startDaemonProcess({ runtime: 'machine' });
  const cli = async (...args: string[]): Promise<void> => {
    const r = await runCli(d.home, args);
    if (r.status !== 0) throw new Error(`typevisor ${args.join(' ')}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  };
  try {
    const fwd = await freePort();
    const base = ['--kernel', g.kernel, '--initrd', g.initramfs, '--cmdline', APPEND, '--memory', '256'];
    if (values.offload === 'off') base.push('--nic', 'network=default,offload=off');
    await cli('create', 'bench-a', ...base, '--publish', `${fwd}:${FWD_GUEST_PORT}`, '--start');
    await cli('create', 'bench-b', ...base, '--start');
    const a = new DaemonVm(d, 'bench-a');
    const b = new DaemonVm(d, 'bench-b');
    for (const vm of [a, b])
      await waitFor(
        `${vm.name} agent`,
        () =>
          vm.sh('true', 60_000).then(
            () => true,
            () => undefined,
          ),
        600_000,
        1000,
      );
    await a.ip();
    const ipB = await b.ip();

    // VM → host
    const s = sink();
    const up0 = await a.instret();
    await a.sh(sendScript(SLIRP_GATEWAY, await s.port, BYTES));
    const up = await s.done;
    const up1 = await a.instret();
    s.server.close();
    if (up.bytes !== BYTES) throw new Error(`host sink got ${up.bytes} bytes, expected ${BYTES}`);

    // host → VM through the published port
    const down = a.sh(receiveScript(FWD_GUEST_PORT));
    await a.sh(listeningScript(FWD_GUEST_PORT), 60_000);
    const down0 = await a.instret();
    const t0 = await push(fwd);
    const downReceipt = parseReceipt(await down, BYTES);
    const downHostSeconds = (performance.now() - t0) / 1000;
    const down1 = await a.instret();

    // VM ↔ VM
    const across = b.sh(receiveScript(VM_PORT));
    await b.sh(listeningScript(VM_PORT), 60_000);
    const across0 = (await a.instret()) + (await b.instret());
    await a.sh(sendScript(ipB, VM_PORT, BYTES));
    const acrossReceipt = parseReceipt(await across, BYTES);
    const across1 = (await a.instret()) + (await b.instret());

    const pingGateway = pingAverageMs(await a.sh(`ping -c 10 -i 0.2 ${SLIRP_GATEWAY}`));
    const pingVm = pingAverageMs(await a.sh(`ping -c 10 -i 0.2 ${ipB}`));
    return {
      vmToHost: rate(up),
      hostToVm: rate(downReceipt),
      vmToVm: rate(acrossReceipt),
      hostToVmHostTimed: mibps(BYTES, downHostSeconds),
      pingGatewayMs: pingGateway,
      pingVmMs: pingVm,
      bytesPerInsn: { vmToHost: BYTES / (up1 - up0), hostToVm: BYTES / (down1 - down0), vmToVm: BYTES / (across1 - across0) },
    };
  } finally {
    await d.stop();
    removeHome(d.home);
  }
}

// ---- qemu ---------------------------------------------------------------------------------------------------

/** The interface that has MAC `mac`, as a shell expression. */
const ifaceOf = (mac: string): string => `$(grep -l ${mac} /sys/class/net/*/address | cut -d/ -f5)`;
const USER_MAC = '52:54:00:00:01:01';
const LINK_MAC_A = '52:54:00:00:02:01';
const LINK_MAC_B = '52:54:00:00:02:02';
const LINK_A = '192.168.77.1';
const LINK_B = '192.168.77.2';

/**
 * A static address on the socket link. The image's init starts udhcpc on eth0 whatever it is; on the link there
 * is no DHCP server, and its deconfig would flush our address, so it is stopped there.
 */
const linkUp = (mac: string, ip: string): string =>
  `S=${ifaceOf(mac)}; [ "$S" = eth0 ] && kill $(cat /run/udhcpc.eth0.pid) 2>/dev/null; ` +
  `ip addr flush dev $S; ip addr add ${ip}/24 dev $S; ip link set $S up; ip -4 addr show $S`;

/** The slirp NIC by DHCP, unless init's udhcpc has configured it already. */
const userUp =
  `U=${ifaceOf(USER_MAC)}; ip link set $U up; ip -4 addr show $U | grep -q inet || ` +
  `udhcpc -i $U -n -q -t 5 -T 2 -s /usr/share/udhcpc/default.script >/dev/null 2>&1; ip -4 addr show $U`;

/** qemu's two guests: A on slirp (with the host forward) and on the socket link, B on the socket link only. */
async function qemuPair(extraA: string[] = [], extraB: string[] = []): Promise<{ a: QemuGuest; b: QemuGuest; fwd: number }> {
  const fwd = await freePort();
  const link = await freePort();
  const a = new QemuGuest(
    [
      ...['-netdev', `user,id=u0,hostfwd=tcp:127.0.0.1:${fwd}-:${FWD_GUEST_PORT}`],
      ...['-device', `virtio-net-device,netdev=u0,mac=${USER_MAC}`],
      ...['-netdev', `socket,id=s0,listen=127.0.0.1:${link}`],
      ...['-device', `virtio-net-device,netdev=s0,mac=${LINK_MAC_A}`],
      ...extraA,
    ],
    APPEND,
  );
  // B connects to A's listening socket, which exists once A's qemu runs its guest.
  await a.started();
  const b = new QemuGuest(
    [
      ...['-netdev', `socket,id=s0,connect=127.0.0.1:${link}`],
      ...['-device', `virtio-net-device,netdev=s0,mac=${LINK_MAC_B}`],
      ...extraB,
    ],
    APPEND,
  );
  try {
    await Promise.all([a.ready(), b.ready()]);
    const userAddr = await a.run(userUp, 120_000);
    if (!/inet 10\.0\.2\.\d+/.test(userAddr)) throw new Error(`qemu A got no slirp address:\n${userAddr}`);
    await a.run(linkUp(LINK_MAC_A, LINK_A), 60_000);
    await b.run(linkUp(LINK_MAC_B, LINK_B), 60_000);
    return { a, b, fwd };
  } catch (e) {
    await Promise.all([a.stop(), b.stop()]);
    throw e;
  }
}

/** The transfers, as typed on qemu's consoles; `mark` is called at each transfer's boundaries. */
async function qemuTransfers(
  a: QemuGuest,
  b: QemuGuest,
  fwd: number,
  mark: (what: 'vmToHost' | 'hostToVm' | 'vmToVm', edge: 0 | 1) => void,
): Promise<Omit<Figures, 'pingGatewayMs' | 'pingVmMs'>> {
  const s = sink();
  mark('vmToHost', 0);
  await a.run(sendScript(SLIRP_GATEWAY, await s.port, BYTES));
  const up = await s.done;
  mark('vmToHost', 1);
  s.server.close();
  if (up.bytes !== BYTES) throw new Error(`host sink got ${up.bytes} bytes, expected ${BYTES}`);

  // The receiver runs in the background of the console's shell; `wait` collects it once the host has sent.
  await a.run(`(${receiveScript(FWD_GUEST_PORT)}) >/tmp/recv 2>&1 & ${listeningScript(FWD_GUEST_PORT)}`, 60_000);
  mark('hostToVm', 0);
  const t0 = await push(fwd);
  const downReceipt = parseReceipt(await a.run('wait; cat /tmp/recv'), BYTES);
  const downHostSeconds = (performance.now() - t0) / 1000;
  mark('hostToVm', 1);

  await b.run(`(${receiveScript(VM_PORT)}) >/tmp/recv 2>&1 & ${listeningScript(VM_PORT)}`, 60_000);
  mark('vmToVm', 0);
  await a.run(sendScript(LINK_B, VM_PORT, BYTES));
  const acrossReceipt = parseReceipt(await b.run('wait; cat /tmp/recv'), BYTES);
  mark('vmToVm', 1);
  return {
    vmToHost: rate(up),
    hostToVm: rate(downReceipt),
    vmToVm: rate(acrossReceipt),
    hostToVmHostTimed: mibps(BYTES, downHostSeconds),
  };
}

async function qemu(): Promise<Figures> {
  const { a, b, fwd } = await qemuPair();
  try {
    const f = await qemuTransfers(a, b, fwd, () => undefined);
    const pingGatewayMs = pingAverageMs(await a.run(`ping -c 10 -i 0.2 ${SLIRP_GATEWAY}`));
    const pingVmMs = pingAverageMs(await a.run(`ping -c 10 -i 0.2 ${LINK_B}`));
    return { ...f, pingGatewayMs, pingVmMs };
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
}

/** A second qemu pass under an instruction-counting TCG plugin (slower: only its instruction counts are used). */
async function qemuBytesPerInsn(): Promise<NonNullable<Figures['bytesPerInsn']>> {
  const ca = InsnCounter.create();
  const cb = InsnCounter.create();
  const { a, b, fwd } = await qemuPair(ca.qemuArgs, cb.qemuArgs);
  try {
    const at: Record<string, [number, number]> = {};
    await qemuTransfers(a, b, fwd, (what, edge) => {
      const n = what === 'vmToVm' ? ca.read() + cb.read() : ca.read();
      (at[what] ??= [0, 0])[edge] = n;
    });
    const per = (k: string): number => BYTES / (at[k]![1] - at[k]![0]);
    return { vmToHost: per('vmToHost'), hostToVm: per('hostToVm'), vmToVm: per('vmToVm') };
  } finally {
    await Promise.all([a.stop(), b.stop()]);
    ca.dispose();
    cb.dispose();
  }
}

/** Each figure's best over the runs: the most MiB/s, the shortest round trip, the most bytes per instruction. */
function best(runs: Figures[]): Figures | undefined {
  if (!runs.length) return undefined;
  const max = (f: (x: Figures) => number | undefined): number => Math.max(...runs.map((x) => f(x) ?? -Infinity));
  const min = (f: (x: Figures) => number): number => Math.min(...runs.map(f));
  const bpi = runs.every((x) => x.bytesPerInsn)
    ? {
        vmToHost: max((x) => x.bytesPerInsn?.vmToHost),
        hostToVm: max((x) => x.bytesPerInsn?.hostToVm),
        vmToVm: max((x) => x.bytesPerInsn?.vmToVm),
      }
    : undefined;
  return {
    vmToHost: max((x) => x.vmToHost),
    hostToVm: max((x) => x.hostToVm),
    vmToVm: max((x) => x.vmToVm),
    hostToVmHostTimed: max((x) => x.hostToVmHostTimed),
    pingGatewayMs: min((x) => x.pingGatewayMs),
    pingVmMs: min((x) => x.pingVmMs),
    bytesPerInsn: bpi,
  };
}

const loads = [loadavg()[0]!];
const tvRuns: Figures[] = [];
const qRuns: Figures[] = [];
for (let i = 0; i < RUNS; i++) {
  if (!values['skip-typevisor']) tvRuns.push(await typevisor());
  loads.push(loadavg()[0]!);
  if (!values['skip-qemu']) qRuns.push(await qemu());
  loads.push(loadavg()[0]!);
  console.log(`run ${i + 1}: typevisor ${JSON.stringify(tvRuns[i])}\n       qemu ${JSON.stringify(qRuns[i])}`);
}
const tv = best(tvRuns);
const q = best(qRuns);
if (q && values['qemu-insns']) q.bytesPerInsn = await qemuBytesPerInsn();

console.log(
  `\nnetwork, ${MIB} MiB per transfer (typevisor user-mode NAT vs qemu -netdev user / -netdev socket, same kernel and initramfs);` +
    ` best of ${RUNS} run${RUNS > 1 ? 's' : ''}; 1-minute load average at start and after each half: ${loads.map((l) => l.toFixed(1)).join(', ')}`,
);
const pad = (x: number | undefined, digits = 2): string => (x === undefined ? '—' : x.toFixed(digits)).padStart(8);
const rows: [string, keyof Figures, string, boolean][] = [
  ['VM → host TCP', 'vmToHost', 'MiB/s', true],
  ['host → VM TCP (fwd)', 'hostToVm', 'MiB/s', true],
  ['VM ↔ VM TCP', 'vmToVm', 'MiB/s', true],
  ['host → VM, host-timed', 'hostToVmHostTimed', 'MiB/s', true],
  ['ping gateway avg', 'pingGatewayMs', 'ms', false],
  ['ping VM ↔ VM avg', 'pingVmMs', 'ms', false],
];
for (const [name, key, unit, higherIsBetter] of rows) {
  const t = tv?.[key] as number | undefined;
  const qv = q?.[key] as number | undefined;
  console.log(
    `  ${name.padEnd(22)} typevisor ${pad(t)} ${unit.padEnd(5)}   qemu ${pad(qv)} ${unit.padEnd(5)}` +
      (t !== undefined && qv !== undefined ? `   ${ratio(t, qv, higherIsBetter)}` : ''),
  );
}
console.log("  (host-timed: from the host's connect to the guest's report that it has every byte)");
for (const k of ['vmToHost', 'hostToVm', 'vmToVm'] as const) {
  const t = tv?.bytesPerInsn?.[k];
  const qb = q?.bytesPerInsn?.[k];
  console.log(
    `  bytes per guest instruction, ${k.padEnd(8)}: typevisor ${pad(t, 4)}   qemu ${pad(qb, 4)}` +
      (t !== undefined && qb !== undefined ? `   typevisor/qemu ${(t / qb).toFixed(2)}` : ''),
  );
}
for (const k of ['vmToHost', 'hostToVm', 'vmToVm'] as const) {
  // What the guest CPU achieved while moving the bytes: the limit, since both guests do about the same work per byte.
  const mips = (f: Figures | undefined): number | undefined =>
    f?.bytesPerInsn ? (f[k] * 2 ** 20) / f.bytesPerInsn[k] / 1e6 : undefined;
  console.log(
    `  guest M instructions/s, ${k.padEnd(8)}${k === 'vmToVm' ? ' (both VMs)' : ''}: typevisor ${pad(mips(tv), 1)}   qemu ${pad(mips(q), 1)}`,
  );
}
process.exit(0);
