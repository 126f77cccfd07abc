/**
 * The kill -9 campaign (issue 17), shared by test/storage/kill-campaign.test.ts (a few kills) and
 * `npm run kill-campaign -- --kills N` (scripts/kill-campaign.mjs, the long run).
 *
 * A real daemon runs its VMs in process mode. One VM boots the default guest; its data disk is a qcow2 overlay
 * with 4 KiB clusters over the default image's root filesystem (raw), larger than its backing, so guest writes
 * allocate clusters, copy partial clusters from the backing, and add L2 tables and refcount blocks all the time.
 * Every round:
 * - (re)start the VM on the same overlay, upload the writer (fixtures/kill-writer.c, cross-compiled here) and
 *   run it on the raw block device: self-describing records of 1 sector .. 256 KiB at random offsets, O_DIRECT
 *   or buffered, fdatasync every 1..8 records and a console line "KC ROUND REC CHECK" after each fdatasync;
 * - after a random delay SIGKILL the VM process, and wait until the daemon marks the VM crashed;
 * - `qemu-img check` the overlay (corruptions and check errors, leaks counted apart);
 * - `qemu-img convert` it to raw and check every sector: a sector last covered by a flushed record must hold
 *   that record or a later write of the writer; a sector no flushed record covers must hold a whole sector of a
 *   record the writer issued, or the backing file's data.
 * Damage would accumulate: no round repairs anything. After the last kill our `disk check -r leaks` repairs
 * the overlay; qemu-img must then find it clean, and the audit runs again.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VmView } from '../../src/host/actions.js';
import { removeHome, startDaemonProcess, vmProcesses, waitFor, type DaemonHandle } from '../host/daemon-harness.js';
import { runCli } from '../helpers/cli.js';
import { requireGuest } from '../helpers/guest.js';
import { cliArgs, repoRoot } from '../helpers/paths.js';
import { mulberry32 } from '../helpers/prng.js';

export const SECTOR = 512;
const MAGIC = Buffer.from('TVKILL01', 'latin1');
const MAX_SECTORS = 512;
const VM = 'kc';

// ---- the writer's layout and sectors, mirrored from fixtures/kill-writer.c -----------------------------------

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function draw(seed: number, round: number, rec: number, n: number): number {
  return fmix32(
    seed ^ fmix32(Math.imul(round, 0x9e3779b1) ^ fmix32(Math.imul(rec, 0x85ebca77) ^ fmix32((n + 0x27d4eb2f) >>> 0))),
  );
}

/** The report line's check word for (round, rec). */
export const reportCheck = (round: number, rec: number) => fmix32(round ^ fmix32(rec));

/** Record `rec` of `round`: its first LBA and sector count on a disk of `total` sectors. */
export function recordLayout(seed: number, round: number, rec: number, total: number): { lba: number; count: number } {
  const kind = draw(seed, round, rec, 0) % 8;
  const r = draw(seed, round, rec, 1);
  const count = [1, 1 + (r % 7), 8, 8 + (r % 57), 128, 256, MAX_SECTORS, 1 + (r % MAX_SECTORS)][kind]!;
  const wide = (BigInt(draw(seed, round, rec, 2)) << 32n) | BigInt(draw(seed, round, rec, 3));
  let lba = Number(wide % BigInt(total - count + 1));
  if (draw(seed, round, rec, 4) & 1) lba -= lba % 8;
  return { lba, count };
}

function fnv1a(b: Uint8Array, from: number, to: number, h: number): number {
  for (let i = from; i < to; i++) h = Math.imul(h ^ b[i]!, 16777619) >>> 0;
  return h;
}

/** What a sector says about itself, or why it is not a whole writer sector. */
export type SectorView =
  | { kind: 'record'; round: number; rec: number; idx: number; count: number; lba: number }
  | { kind: 'foreign' }
  | { kind: 'torn'; why: string };

export function parseSector(b: Buffer, at: number): SectorView {
  if (b.compare(MAGIC, 0, 8, at, at + 8) !== 0) return { kind: 'foreign' };
  const sum = fnv1a(b, at + 36, at + SECTOR, fnv1a(b, at, at + 32, 2166136261));
  if (sum !== b.readUInt32LE(at + 32)) return { kind: 'torn', why: 'checksum' };
  return {
    kind: 'record',
    round: b.readUInt32LE(at + 8),
    rec: b.readUInt32LE(at + 12),
    idx: b.readUInt32LE(at + 16),
    count: b.readUInt32LE(at + 20),
    lba: b.readUInt32LE(at + 24) + b.readUInt32LE(at + 28) * 2 ** 32,
  };
}

// ---- checking an image ------------------------------------------------------------------------------------------

export interface RoundLog {
  round: number;
  /** Highest record the guest reported flushed (0: none). */
  flushed: number;
}

export interface SectorAudit {
  /** Sectors whose newest flushed record (or a later write) was found intact. */
  flushedSectorsIntact: number;
  /** Sectors holding older data than their newest flushed record: lost flushed writes. */
  lostSectors: number;
  /** Flushed records with at least one lost sector. */
  lostRecords: string[];
  /** Sectors that are neither a whole writer sector the writer issued there nor the backing file's data. */
  corruptSectors: number;
  firstProblems: string[];
}

/** A record's place in the writer's order: (round, rec). */
export const recordId = (round: number, rec: number) => round * 2 ** 32 + rec;

/** For every sector of a disk of `total` sectors, the recordId of the newest flushed record covering it, or -1. */
export function newestFlushed(seed: number, rounds: RoundLog[], total: number): Float64Array {
  const expected = new Float64Array(total).fill(-1);
  for (const r of rounds)
    for (let rec = 1; rec <= r.flushed; rec++) {
      const { lba, count } = recordLayout(seed, r.round, rec, total);
      expected.fill(recordId(r.round, rec), lba, lba + count);
    }
  return expected;
}

/**
 * Checks every sector of `raw` (the overlay converted to raw) against the flushed records of `rounds` and
 * `backing`. A sector's expected record is the newest flushed record covering it; records are ordered by
 * (round, rec), and a record newer than its round's flushed mark may or may not have landed.
 */
export function auditImage(raw: string, backing: string, seed: number, rounds: RoundLog[]): SectorAudit {
  const total = statSync(raw).size / SECTOR;
  const expected = newestFlushed(seed, rounds, total);
  const flushedMark = new Map(rounds.map((r) => [r.round, r.flushed]));
  const audit: SectorAudit = { flushedSectorsIntact: 0, lostSectors: 0, lostRecords: [], corruptSectors: 0, firstProblems: [] };
  const lost = new Set<number>();
  const problem = (text: string) => {
    if (audit.firstProblems.length < 10) audit.firstProblems.push(text);
  };
  const back = readFileSync(backing);
  const CHUNK = 8 << 20;
  const buf = Buffer.alloc(CHUNK);
  const fd = openSync(raw, 'r');
  try {
    for (let base = 0; base < total * SECTOR; base += CHUNK) {
      const n = readSync(fd, buf, 0, CHUNK, base);
      for (let at = 0; at < n; at += SECTOR) {
        const s = (base + at) / SECTOR;
        const want = expected[s]!;
        const v = parseSector(buf, at);
        if (v.kind === 'record') {
          const layout = recordLayout(seed, v.round, v.rec, total);
          const mark = flushedMark.get(v.round);
          const issuedHere =
            mark !== undefined && v.lba === s && layout.count === v.count && s - layout.lba === v.idx && v.idx < v.count;
          if (!issuedHere) {
            audit.corruptSectors++;
            problem(`sector ${s}: holds round ${v.round} record ${v.rec} sector ${v.idx} written for LBA ${v.lba}`);
          } else if (want === -1) {
            /* an unflushed write that landed, or a flushed one since overwritten by unflushed data: both fine */
          } else if (recordId(v.round, v.rec) === want) audit.flushedSectorsIntact++;
          else if (recordId(v.round, v.rec) > want && v.rec > mark) audit.flushedSectorsIntact++;
          else {
            audit.lostSectors++;
            lost.add(want);
            problem(`sector ${s}: holds round ${v.round} record ${v.rec}, older than flushed ${fmtId(want)}`);
          }
        } else if (v.kind === 'torn') {
          audit.corruptSectors++;
          problem(`sector ${s}: a torn writer sector (${v.why})`);
        } else if (want !== -1) {
          audit.lostSectors++;
          lost.add(want);
          problem(`sector ${s}: no writer data, but flushed ${fmtId(want)} covers it`);
        } else {
          const off = s * SECTOR;
          const same =
            off >= back.length
              ? buf.subarray(at, at + SECTOR).every((x) => x === 0)
              : buf.compare(back, off, off + SECTOR, at, at + SECTOR) === 0;
          if (!same) {
            audit.corruptSectors++;
            problem(`sector ${s}: neither writer data nor the backing file's`);
          }
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  audit.lostRecords = [...lost].map(fmtId);
  return audit;
}

const fmtId = (id: number) => `round ${Math.floor(id / 2 ** 32)} record ${id % 2 ** 32}`;

// ---- qemu-img ---------------------------------------------------------------------------------------------------

export interface ImageCheck {
  status: number;
  corruptions: number;
  leaks: number;
  checkErrors: number;
  allocatedClusters: number;
}

export function qemuImgCheck(image: string): ImageCheck {
  const r = spawnSync('qemu-img', ['check', '--output=json', image], { encoding: 'utf8' });
  if (r.error) throw new Error(`qemu-img is required (apt-get install qemu-utils): ${r.error.message}`);
  let j: Record<string, number>;
  try {
    j = JSON.parse(r.stdout) as Record<string, number>;
  } catch {
    throw new Error(`qemu-img check ${image}: exit ${r.status}, no JSON:\n${r.stdout}\n${r.stderr}`);
  }
  return {
    status: r.status ?? -1,
    corruptions: j.corruptions ?? 0,
    leaks: j.leaks ?? 0,
    checkErrors: j['check-errors'] ?? 0,
    allocatedClusters: j['allocated-clusters'] ?? 0,
  };
}

// ---- the campaign -----------------------------------------------------------------------------------------------

export interface CampaignOptions {
  kills: number;
  seed: number;
  /** Virtual size of the data disk (its backing, the default root filesystem, is 64 MiB). */
  diskMiB?: number;
  clusterSize?: number;
  /** The longest wait between the writer's start and the kill. */
  maxDelayMs?: number;
  log?: (line: string) => void;
}

export interface RoundResult {
  round: number;
  delayMs: number;
  flushed: number;
  check: ImageCheck;
  audit: SectorAudit;
  ms: number;
}

export interface CampaignResult {
  kills: number;
  seed: number;
  rounds: RoundResult[];
  corruptImages: number;
  lostFlushedRecords: number;
  corruptSectors: number;
  /** Leaked clusters qemu-img reports after the last round (they accumulate: nothing repairs them). */
  leakedClusters: number;
  maxLeaks: number;
  flushedRecords: number;
  finalSectorsVerified: number;
  /** After the last kill: our `disk check -r leaks` on the overlay, then qemu-img check and the audit again. */
  afterRepair?: { check: ImageCheck; audit: SectorAudit };
  seconds: number;
}

export function buildWriter(dir: string): Buffer {
  const out = join(dir, 'kill-writer');
  const src = join(repoRoot, 'test/storage/fixtures/kill-writer.c');
  const r = spawnSync('riscv64-linux-gnu-gcc', ['-static', '-O2', '-s', '-Wall', '-o', out, src], { encoding: 'utf8' });
  if (r.error || r.status !== 0)
    throw new Error(
      `riscv64-linux-gnu-gcc failed (apt-get install gcc-riscv64-linux-gnu libc6-dev-riscv64-cross):\n${r.error?.message ?? r.stderr}`,
    );
  return readFileSync(out);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The writer's lines for `round` in console text: whether it started, the highest record it reported flushed,
 * and any error lines. A line may follow a shell prompt, and kernel messages may cut it: only lines whose check
 * word matches count.
 */
export function parseReports(text: string, round: number): { started: boolean; flushed: number; errors: string[] } {
  let flushed = 0;
  let started = false;
  const errors: string[] = [];
  for (const m of text.matchAll(/KC (\d+) (\S+)(?: (\S+))?\r?$/gm)) {
    if (Number(m[1]) !== round) continue;
    if (m[2] === 'start') started = true;
    else if (m[2] === 'error') errors.push(m[0]);
    else if (/^\d+$/.test(m[2]!) && m[3] === reportCheck(round, Number(m[2])).toString(16).padStart(8, '0'))
      flushed = Math.max(flushed, Number(m[2]));
  }
  return { started, flushed, errors };
}

/** parseReports over the VM's console log and its rotated predecessor. */
function reportedFlushed(vmDir: string, round: number): { started: boolean; flushed: number; errors: string[] } {
  let text = '';
  for (const f of ['console.log.1', 'console.log'])
    try {
      text += readFileSync(join(vmDir, f), 'latin1');
    } catch {
      /* not there (yet) */
    }
  return parseReports(text, round);
}

export async function runKillCampaign(o: CampaignOptions): Promise<CampaignResult> {
  const log = o.log ?? (() => {});
  const g = requireGuest();
  const t0 = performance.now();
  const rand = mulberry32(o.seed);
  const work = mkdtempSync(join(tmpdir(), 'tv-killcampaign-'));
  const writer = buildWriter(work);
  const writerMd5 = createHash('md5').update(writer).digest('hex');
  let d: DaemonHandle | undefined;
  const rounds: RoundResult[] = [];
  const logs: RoundLog[] = [];
  let afterRepair: CampaignResult['afterRepair'];
  try {
    d = await startDaemonProcess({ runtime: 'machine', vmMode: 'process' });
    const home = d.home;
    const cli = (...args: string[]) => runCli(home, args);
    await d.client.json('POST', '/vms', {
      name: VM,
      vcpus: 1,
      memoryMiB: 128,
      disks: [{ format: 'qcow2', backing: 'default' }],
    });
    // The data disk the daemon made (64 KiB clusters, the backing's size) is swapped for one with small clusters
    // and a virtual size past its backing's end, so metadata grows in every round.
    const vmDir = join(home, 'vms', VM);
    const overlay = join(vmDir, 'disk1.qcow2');
    rmSync(overlay);
    const made = spawnSync(
      process.execPath,
      cliArgs(
        'disk',
        'create',
        '-f',
        'qcow2',
        '-b',
        g.rootfs,
        '-F',
        'raw',
        '-o',
        `cluster_size=${o.clusterSize ?? 4096}`,
        overlay,
        `${o.diskMiB ?? 256}M`,
      ),
      { encoding: 'utf8' },
    );
    if (made.status !== 0) throw new Error(`disk create: ${made.stderr}`);
    const view = () => d!.client.json<VmView>('GET', `/vms/${VM}`);

    for (let round = 1; round <= o.kills; round++) {
      const r0 = performance.now();
      await d.client.json('POST', `/vms/${VM}/actions/start`, {});
      await waitFor(
        `round ${round}: the guest agent`,
        async () => ((await cli('exec', VM, '--timeout', '60', '--', 'true')).status === 0 ? true : undefined),
        600_000,
        500,
      );
      // The writer lives on the root disk (itself an overlay the kills hit too): uploaded once, again if damaged.
      const probe = await cli(
        'exec',
        VM,
        '--',
        'sh',
        '-c',
        'md5sum /kw 2>/dev/null; for b in /sys/block/vd*; do [ "$(cat $b/serial)" = disk1 ] && echo "dev ${b##*/}"; done',
      );
      const have = /^([0-9a-f]{32}) /m.exec(probe.stdout)?.[1];
      const dev = /^dev (vd[a-z]+)$/m.exec(probe.stdout)?.[1];
      if (!dev) throw new Error(`round ${round}: no block device with serial disk1:\n${probe.stdout}${probe.stderr}`);
      if (have !== writerMd5) {
        if (have) log(`round ${round}: the writer on the root disk was damaged (md5 ${have}); uploading it again`);
        const up = await runCli(
          home,
          ['exec', VM, '-i', '--', 'sh', '-c', 'cat > /kw.new && chmod +x /kw.new && mv /kw.new /kw && sync'],
          { input: writer },
        );
        if (up.status !== 0) throw new Error(`round ${round}: upload: ${up.stderr}`);
      }
      const direct = rand() < 0.5 ? 1 : 0;
      const run = await cli(
        'exec',
        VM,
        '--',
        'sh',
        '-c',
        `setsid /kw /dev/${dev} ${o.seed} ${round} ${direct} /dev/console </dev/null >/dev/console 2>&1 &`,
      );
      if (run.status !== 0) throw new Error(`round ${round}: starting the writer: ${run.stderr}`);
      await waitFor(
        `round ${round}: the writer's start line`,
        () => reportedFlushed(vmDir, round).started || undefined,
        60_000,
        50,
      );
      // A quarter of the kills land in the first half second (while the first clusters are allocated).
      const max = o.maxDelayMs ?? 6000;
      const delayMs = Math.floor(rand() < 0.25 ? rand() * 500 : 500 + rand() * (max - 500));
      await sleep(delayMs);
      const proc = vmProcesses(home).find((p) => p.name === VM);
      if (!proc) throw new Error(`round ${round}: no VM process to kill`);
      process.kill(proc.pid, 'SIGKILL');
      const crashed = await waitFor(
        `round ${round}: the daemon marks the VM crashed`,
        async () => {
          const v = await view();
          return v.state === 'crashed' ? v : undefined;
        },
        60_000,
      );
      if (!/SIGKILL/.test(crashed.stateReason ?? '')) throw new Error(`round ${round}: crashed for ${crashed.stateReason}`);
      await sleep(200);
      const rep = reportedFlushed(vmDir, round);
      if (rep.errors.length) throw new Error(`round ${round}: the writer failed: ${rep.errors.join('; ')}`);
      logs.push({ round, flushed: rep.flushed });

      const check = qemuImgCheck(overlay);
      const raw = join(work, 'image.raw');
      const conv = spawnSync('qemu-img', ['convert', '-O', 'raw', overlay, raw], { encoding: 'utf8' });
      if (conv.status !== 0) throw new Error(`round ${round}: qemu-img convert: ${conv.stderr}`);
      const audit = auditImage(raw, g.rootfs, o.seed, logs);
      rmSync(raw);
      const res: RoundResult = { round, delayMs, flushed: rep.flushed, check, audit, ms: performance.now() - r0 };
      rounds.push(res);
      log(
        `round ${round}: ${direct ? 'O_DIRECT' : 'buffered'}, killed after ${delayMs} ms, ${rep.flushed} records flushed; ` +
          `qemu-img check exit ${check.status} corruptions ${check.corruptions} errors ${check.checkErrors} leaks ${check.leaks} ` +
          `(${check.allocatedClusters} clusters); ${audit.flushedSectorsIntact} flushed sectors intact, ` +
          `${audit.lostSectors} lost, ${audit.corruptSectors} corrupt${audit.firstProblems.length ? `: ${audit.firstProblems.join('; ')}` : ''} ` +
          `(${(res.ms / 1000).toFixed(1)} s)`,
      );
    }
    // Leaks are the designed worst case of a kill: our own repair must clear them without touching data.
    const repair = spawnSync(process.execPath, cliArgs('disk', 'check', '-r', 'leaks', '-f', 'qcow2', overlay), {
      encoding: 'utf8',
    });
    if (repair.status !== 0) throw new Error(`disk check -r leaks: exit ${repair.status}\n${repair.stdout}${repair.stderr}`);
    const raw = join(work, 'image.raw');
    const conv = spawnSync('qemu-img', ['convert', '-O', 'raw', overlay, raw], { encoding: 'utf8' });
    if (conv.status !== 0) throw new Error(`after the repair: qemu-img convert: ${conv.stderr}`);
    afterRepair = { check: qemuImgCheck(overlay), audit: auditImage(raw, g.rootfs, o.seed, logs) };
    rmSync(raw);
    log(
      `after disk check -r leaks: qemu-img check exit ${afterRepair.check.status} corruptions ${afterRepair.check.corruptions} ` +
        `leaks ${afterRepair.check.leaks}; ${afterRepair.audit.flushedSectorsIntact} flushed sectors intact, ` +
        `${afterRepair.audit.lostSectors} lost, ${afterRepair.audit.corruptSectors} corrupt`,
    );
  } finally {
    if (d) {
      await d.stop();
      removeHome(d.home);
    }
    rmSync(work, { recursive: true, force: true });
  }
  const last = rounds.at(-1);
  return {
    kills: rounds.length,
    seed: o.seed,
    rounds,
    corruptImages: rounds.filter((r) => r.check.corruptions > 0 || r.check.checkErrors > 0 || r.audit.corruptSectors > 0).length,
    lostFlushedRecords: new Set(rounds.flatMap((r) => r.audit.lostRecords)).size,
    corruptSectors: rounds.reduce((n, r) => n + r.audit.corruptSectors, 0),
    leakedClusters: last?.check.leaks ?? 0,
    maxLeaks: Math.max(0, ...rounds.map((r) => r.check.leaks)),
    flushedRecords: logs.reduce((n, r) => n + r.flushed, 0),
    finalSectorsVerified: last?.audit.flushedSectorsIntact ?? 0,
    afterRepair,
    seconds: (performance.now() - t0) / 1000,
  };
}

export function summary(r: CampaignResult): string {
  return (
    `${r.kills} kills (seed ${r.seed}) in ${Math.round(r.seconds)} s: ${r.corruptImages} corrupt images, ` +
    `${r.lostFlushedRecords} lost flushed records, ${r.corruptSectors} corrupt sectors; ${r.flushedRecords} flushed records ` +
    `checked, ${r.finalSectorsVerified} sectors of flushed data verified in the last image; leaked clusters ${r.leakedClusters} ` +
    `at the end (max ${r.maxLeaks})` +
    (r.afterRepair
      ? `; after disk check -r leaks: qemu-img check exit ${r.afterRepair.check.status}, leaks ${r.afterRepair.check.leaks}, ` +
        `${r.afterRepair.audit.lostSectors + r.afterRepair.audit.corruptSectors} bad sectors`
      : '')
  );
}
