/**
 * Snapshot benchmark: the same busybox guest (256 MiB unless --memory-mib) (kernel + ext4 root disk as a qcow2 overlay) in typevisor
 * (daemon: `snapshot create` / `snapshot restore`) and in qemu-system-riscv64 (`migrate` to a file, then a new
 * qemu with `-incoming` from it), booted-idle and busy (--busy-mib, default 100 MiB, written to tmpfs and a CPU
 * loop). For each:
 * time to snapshot, snapshot size, time from the restore request to the guest running, and to its console
 * answering a command.
 *
 * With --rounds N (default 1) each snapshot is restored N times each way; the table then shows the best and the
 * median of the N, since this shared machine's load moves single figures a lot.
 *
 *   node dist/bench/snapshot/index.js [--skip-qemu | --skip-typevisor] [--rounds N] [--memory-mib M] [--busy-mib B]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { SnapshotOutcome, VmView } from '../../src/host/actions.js';
import { guestArtifacts } from '../../src/guests/index.js';
import { createDisk } from '../../src/storage/index.js';
import { VmConsole } from '../../test/helpers/vm-console.js';
import { removeHome, startDaemonProcess, waitFor } from '../../test/host/daemon-harness.js';

const { values } = parseArgs({
  options: {
    'skip-qemu': { type: 'boolean' },
    /** The peer's half alone (its figures vary less than ours between runs; see docs/performance.md). */
    'skip-typevisor': { type: 'boolean' },
    rounds: { type: 'string', default: '1' },
    'memory-mib': { type: 'string', default: '256' },
    'busy-mib': { type: 'string', default: '100' },
  },
});
const ROUNDS = Math.max(1, Number(values.rounds) || 1);
const MEMORY_MIB = Number(values['memory-mib']);
const BUSY_MIB = Number(values['busy-mib']);
if (!Number.isInteger(MEMORY_MIB) || MEMORY_MIB < 64 || !Number.isInteger(BUSY_MIB) || BUSY_MIB < 0 || BUSY_MIB > MEMORY_MIB - 48)
  throw new Error('--memory-mib takes an integer ≥ 64, and --busy-mib an integer leaving the guest ≥ 48 MiB');
const g = guestArtifacts();
const BUSY = `{ dd if=/dev/urandom of=/tmp/big bs=1M count=${BUSY_MIB} 2>/dev/null; (while :; do :; done) >/dev/null 2>&1 & }`;

interface Row {
  engine: string;
  load: string;
  snapshotMs: number;
  /** Of it, the guest was paused (typevisor: worker pause to state durable). */
  pausedMs?: number;
  sizeMiB: number;
  /** Per round (one entry unless --rounds). */
  runningMs: number[];
  consoleMs: number[];
}
const rows: Row[] = [];

const dirBytes = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce(
    (n, e) => n + (e.isDirectory() ? dirBytes(join(dir, e.name)) : statSync(join(dir, e.name)).size),
    0,
  );

async function typevisor(): Promise<void> {
  const d = await startDaemonProcess({ runtime: 'machine' });
  try {
    await d.client.json('POST', '/vms', { name: 'b', memoryMiB: MEMORY_MIB });
    await d.client.json('POST', '/vms/b/actions/start', {});
    const marker = (await d.client.json<VmView>('GET', '/vms/b')).bootMarker!;
    await waitFor(
      'boot',
      async () => ((await d.client.text('/vms/b/console.log')).toString('latin1').includes(marker) ? true : undefined),
      600_000,
      200,
    );
    let con = await VmConsole.open(d.client, 'b');
    await con.sh('true');
    for (const load of ['idle', 'busy']) {
      if (load === 'busy') await con.sh(BUSY, 300_000 + BUSY_MIB * 10_000);
      const t0 = performance.now();
      const created = await d.client.json<SnapshotOutcome>('POST', '/vms/b/snapshots', { name: load });
      const snapshotMs = performance.now() - t0;
      // Memory and device state, as in qemu's migration stream (the disk layer is the image itself: linked).
      const size = dirBytes(join(d.home, 'vms', 'b', 'snapshots', load));
      // 'revert': the running VM goes back to the snapshot (its worker stays); 'cold': the VM is stopped first, so
      // the restore needs a VM worker (from the pool when one is warm).
      const byHow = new Map<string, Row>();
      for (let round = 0; round < ROUNDS; round++)
        for (const how of ['revert', 'cold']) {
          if (how === 'cold') await d.client.json('POST', '/vms/b/actions/stop', {});
          con.close();
          const t1 = performance.now();
          const restored = await d.client.json<SnapshotOutcome>('POST', `/vms/b/snapshots/${load}/restore`, {});
          const runningMs = performance.now() - t1;
          con = await VmConsole.open(d.client, 'b');
          await con.sh('echo $((6*7))');
          const consoleMs = performance.now() - t1;
          let row = byHow.get(how);
          if (!row) {
            row = {
              engine: `typevisor ${how}`,
              load,
              snapshotMs,
              pausedMs: created.workerMs,
              sizeMiB: size / 2 ** 20,
              runningMs: [],
              consoleMs: [],
            };
            byHow.set(how, row);
            rows.push(row);
          }
          row.runningMs.push(runningMs);
          row.consoleMs.push(consoleMs);
          const phases = Object.entries(restored.phases ?? {}).map(([k, v]) => `${k} ${v.toFixed(1)}`);
          console.error(
            `typevisor ${how} ${load} #${round + 1}: api ${runningMs.toFixed(1)} ms, console ${consoleMs.toFixed(0)} ms, host ${restored.totalMs.toFixed(1)} ms: ${phases.join(', ')}`,
          );
          // The pool refills a little after a worker is taken: the next cold restore should find a warm one, as
          // a restore on a quiet daemon does.
          if (how === 'cold' && round + 1 < ROUNDS) await new Promise((r) => setTimeout(r, 4_000));
        }
    }
    con.close();
  } finally {
    await d.stop();
    removeHome(d.home);
  }
}

/** A qemu-system-riscv64 with its serial on stdio and an HMP monitor on a unix socket. */
class Qemu {
  out = '';
  private constructor(
    readonly proc: ChildProcess,
    readonly monitor: string,
  ) {}

  static start(dir: string, disk: string, extra: string[]): Qemu {
    const monitor = join(dir, `mon-${Date.now()}.sock`);
    const args = ['-M', 'virt', '-m', String(MEMORY_MIB), '-smp', '1', '-display', 'none', '-serial', 'stdio'];
    args.push('-monitor', `unix:${monitor},server,nowait`, '-kernel', g.kernel, '-append', 'root=/dev/vda rw console=ttyS0');
    args.push('-drive', `file=${disk},format=qcow2,if=none,id=d0`, '-device', 'virtio-blk-device,drive=d0', ...extra);
    const q = new Qemu(spawn('qemu-system-riscv64', args, { stdio: ['pipe', 'pipe', 'pipe'] }), monitor);
    q.proc.stdout!.on('data', (b: Buffer) => (q.out += b.toString('latin1')));
    return q;
  }

  async waitFor(text: string, from: number, ms = 600_000): Promise<void> {
    const end = Date.now() + ms;
    while (!this.out.slice(from).includes(text)) {
      if (Date.now() > end) throw new Error(`qemu: no ${text}\n${this.out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  async sh(cmd: string, ms = 300_000): Promise<void> {
    const from = this.out.length;
    this.proc.stdin!.write(`${cmd}; echo Q-$((1000+7))-END\n`);
    await this.waitFor('Q-1007-END', from, ms);
  }

  /** One HMP command; resolves with its output once the monitor prompt returns. */
  async hmp(cmd: string): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await new Promise<string>((resolve, reject) => {
          const s = createConnection(this.monitor);
          let buf = '';
          let sent = false;
          s.on('data', (b) => {
            buf += b.toString('latin1');
            if (!sent && buf.includes('(qemu)')) {
              sent = true;
              buf = '';
              s.write(`${cmd}\n`);
            } else if (sent && buf.includes('(qemu)')) {
              s.end();
              resolve(buf);
            }
          });
          s.on('error', reject);
        });
      } catch (err) {
        if (attempt > 200) throw err;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  async quit(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGKILL');
    await exited;
  }
}

async function qemu(): Promise<void> {
  let running: Qemu | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'tv-bench-snap-'));
  try {
    const disk = join(dir, 'root.qcow2');
    await createDisk(disk, { format: 'qcow2', backingFile: g.rootfs, backingFormat: 'raw' });
    let q = Qemu.start(dir, disk, []);
    // A failed half must not leave its qemu running (it would load the machine for whatever runs next).
    running = q;
    await q.waitFor(g.marker, 0);
    await q.sh('true');
    for (const load of ['idle', 'busy']) {
      if (load === 'busy') await q.sh(BUSY);
      const file = join(dir, `${load}.mig`);
      const t0 = performance.now();
      await q.hmp(`migrate "exec:cat > ${file}"`);
      for (;;) {
        const info = await q.hmp('info migrate');
        if (/Migration status: completed/.test(info)) break;
        if (/Migration status: (failed|cancelled)/.test(info)) throw new Error(info);
        await new Promise((r) => setTimeout(r, 2));
      }
      const snapshotMs = performance.now() - t0;
      await q.quit();
      const t1 = performance.now();
      q = Qemu.start(dir, disk, ['-incoming', `exec:cat ${file}`]);
      running = q;
      // Without -S, qemu starts the guest as soon as the incoming stream is loaded.
      while (!/VM status: running/.test(await q.hmp('info status'))) await new Promise((r) => setTimeout(r, 2));
      const runningMs = performance.now() - t1;
      await q.sh('echo $((6*7))');
      const consoleMs = performance.now() - t1;
      rows.push({
        engine: 'qemu',
        load,
        snapshotMs,
        sizeMiB: statSync(file).size / 2 ** 20,
        runningMs: [runningMs],
        consoleMs: [consoleMs],
      });
    }
    await q.quit();
    running = undefined;
  } finally {
    if (running) await running.quit().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!values['skip-typevisor']) await typevisor();
let qemuFailure: string | undefined;
if (!values['skip-qemu'])
  await qemu().catch((err: Error) => {
    // The typevisor rows are still worth printing; say what went wrong on the qemu side.
    qemuFailure = err.message.split('\n')[0];
  });
const f = (n: number | undefined, w: number): string => (n === undefined ? '-' : n.toFixed(0)).padStart(w);
/** One figure, or with several rounds "best / median". */
const spread = (xs: number[], w: number): string => {
  if (xs.length === 1) return f(xs[0], w);
  const sorted = [...xs].sort((a, b) => a - b);
  return `${sorted[0]!.toFixed(0)} / ${sorted[Math.floor(sorted.length / 2)]!.toFixed(0)}`.padStart(w);
};
console.log(
  `snapshot of a booted ${MEMORY_MIB} MiB busybox VM (busy: ${BUSY_MIB} MiB in tmpfs; 1 vCPU; load average ${loadavg()[0]!.toFixed(1)}` +
    `${ROUNDS > 1 ? `; typevisor restores: best / median of ${ROUNDS}` : ''}):`,
);
console.log('  engine            load   snapshot ms   (paused ms)  size MiB  restore→running ms  restore→console ms');
for (const r of rows)
  console.log(
    `  ${r.engine.padEnd(17)} ${r.load.padEnd(5)} ${f(r.snapshotMs, 12)} ${f(r.pausedMs, 13)} ${r.sizeMiB.toFixed(1).padStart(9)} ${spread(r.runningMs, 19)} ${spread(r.consoleMs, 19)}`,
  );
if (qemuFailure) console.log(`  qemu: ${qemuFailure} (its rows above, if any, are the ones that finished)`);
