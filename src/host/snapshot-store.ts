/**
 * Snapshots of one VM, as files in its folder (the design is argued in docs/architecture.md "Snapshots"):
 *
 *   snapshots/<snap>/snapshot.json     name, parent, time, the disk layers, the machine state file (if live)
 *   snapshots/<snap>/machine.tvstate   memory and device state (src/machine/snapshot), for a running VM
 *   snapshots/layers/<id>-disk<i>.qcow2 read-only disk layers: the disk as it was at some snapshot
 *   snapshots/current                  the snapshot the VM's disks now derive from (the next one's parent)
 *
 * A disk's point-in-time state is an external qcow2 layer: taking a snapshot freezes the active image under a
 * layer name (a hard link, so no data is copied) and the VM continues on a new overlay whose backing file is that
 * layer. Reverting makes a fresh overlay over the snapshot's layer. Layers are never written again; one is
 * removed once no snapshot and no active disk reaches it through the backing chains.
 *
 * Crash safety: a snapshot's folder is built as `.partial-<snap>` and renamed into place last; an overlay is
 * created as `<disk>.next` and renamed over the active image. A crash leaves a partial folder, a `.next` file or
 * an unreferenced layer, all removed by sweep(); never a half snapshot or a disk without its backing file.
 */
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  fstatSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  unlinkSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fsyncDir, writeJsonAtomic } from './atomic.js';
import { createDiskFile } from './disks.js';
import { HostError } from './errors.js';
import { VM_NAME_RE } from './home.js';
import type { DiskConfig } from '../vm/config.js';
import { MAX_CLUSTER_BITS, parseHeader } from '../storage/qcow2/format.js';
import { Qcow2Image } from '../storage/qcow2/image.js';
import { openDisk } from '../storage/index.js';

export const SNAPSHOT_FORMAT = 'typevisor-snapshot';
export const SNAPSHOT_STATE_FILE = 'machine.tvstate';
const META = 'snapshot.json';

export interface SnapshotMeta {
  format: typeof SNAPSHOT_FORMAT;
  version: 1;
  name: string;
  parent: string | null;
  createdAt: string;
  /** The VM's state when taken: a running or paused VM's snapshot holds its machine state. */
  vmState: 'running' | 'paused' | 'stopped';
  /** Per disk (config order): its layer, relative to the VM folder; null for a read-only disk (never changes). */
  layers: (string | null)[];
  /** Machine state file in the snapshot folder, or null (disk-only snapshot). */
  state: string | null;
  stateBytes: number;
}

export function isValidSnapshotName(name: unknown): name is string {
  return typeof name === 'string' && VM_NAME_RE.test(name) && name !== 'layers' && name !== 'current';
}

export class SnapshotStore {
  readonly dir: string;
  readonly layersDir: string;

  constructor(readonly vmDir: string) {
    this.dir = join(vmDir, 'snapshots');
    this.layersDir = join(this.dir, 'layers');
  }

  list(): SnapshotMeta[] {
    if (!existsSync(this.dir)) return [];
    const out: SnapshotMeta[] = [];
    for (const entry of readdirSync(this.dir)) {
      if (!isValidSnapshotName(entry) || !existsSync(join(this.dir, entry, META))) continue;
      out.push(this.read(entry));
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name));
  }

  get(name: string): SnapshotMeta {
    if (!isValidSnapshotName(name))
      throw new HostError('INVALID_NAME', `snapshot name ${JSON.stringify(name)} must match [a-z0-9][a-z0-9-]*`);
    if (!existsSync(join(this.dir, name, META))) throw new HostError('SNAPSHOT_NOT_FOUND', `no snapshot named '${name}'`);
    return this.read(name);
  }

  statePath(meta: SnapshotMeta): string | null {
    return meta.state ? join(this.dir, meta.name, meta.state) : null;
  }

  current(): string | null {
    try {
      const v = (JSON.parse(readFileSync(join(this.dir, 'current'), 'utf8')) as { current?: unknown }).current;
      return typeof v === 'string' && existsSync(join(this.dir, v, META)) ? v : null;
    } catch {
      return null;
    }
  }

  setCurrent(name: string | null): void {
    writeJsonAtomic(join(this.dir, 'current'), { current: name }, 0o600);
  }

  /** Checks the name is free and the disks can be snapshotted; returns the partial folder to fill. */
  begin(name: string, disks: DiskConfig[]): string {
    if (!isValidSnapshotName(name))
      throw new HostError('INVALID_NAME', `snapshot name ${JSON.stringify(name)} must match [a-z0-9][a-z0-9-]*`);
    if (existsSync(join(this.dir, name))) throw new HostError('SNAPSHOT_EXISTS', `snapshot '${name}' already exists`);
    disks.forEach((d, i) => {
      if (!d.readOnly && d.format !== 'qcow2')
        throw new HostError('INVALID_CONFIG', `disk ${i} (${basename(d.path)}) is ${d.format}: snapshots need qcow2 disks`);
    });
    mkdirSync(this.layersDir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, `.partial-${name}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { mode: 0o700 });
    return tmp;
  }

  /**
   * Freezes each writable disk: its image gets a layer name (hard link) and a new overlay `<disk>.next` is created
   * over that layer. The caller makes the VM use the overlays (switchOverlays) before the guest writes again.
   */
  async freezeDisks(disks: DiskConfig[]): Promise<{ layers: (string | null)[]; overlays: (string | null)[] }> {
    const id = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const layers: (string | null)[] = [];
    const overlays: (string | null)[] = [];
    for (const [i, d] of disks.entries()) {
      if (d.readOnly) {
        layers.push(null);
        overlays.push(null);
        continue;
      }
      const layer = join(this.layersDir, `${id}-disk${i}.qcow2`);
      await repairLeaks(d.path);
      linkSync(d.path, layer);
      const next = `${d.path}.next`;
      rmSync(next, { force: true });
      await createDiskFile({ path: next, format: 'qcow2', backingFile: layer, backingFormat: 'qcow2' });
      layers.push(this.relative(layer));
      overlays.push(next);
    }
    fsyncDir(this.layersDir);
    return { layers, overlays };
  }

  /**
   * Makes the new overlays the VM's disks (atomic renames over the active images); the frozen layers, now only
   * reachable under their layer names, become read-only.
   */
  switchOverlays(disks: DiskConfig[], overlays: (string | null)[], layers: (string | null)[] = []): void {
    disks.forEach((d, i) => {
      const next = overlays[i];
      if (next) renameSync(next, d.path);
    });
    for (const dir of new Set(disks.map((d) => dirname(d.path)))) fsyncDir(dir);
    for (const l of layers) if (l) chmodSync(join(this.vmDir, l), 0o400);
  }

  /** Completes a snapshot: writes its description and renames the partial folder into place. */
  finish(tmp: string, meta: SnapshotMeta): void {
    writeJsonAtomic(join(tmp, META), meta, 0o600);
    fsyncDir(tmp);
    renameSync(tmp, join(this.dir, meta.name));
    fsyncDir(this.dir);
    this.setCurrent(meta.name);
  }

  /** New overlays over the snapshot's layers, renamed over the VM's disks (the old active images are dropped). */
  async revertDisks(meta: SnapshotMeta, disks: DiskConfig[]): Promise<void> {
    if (meta.layers.length !== disks.length)
      throw new HostError('INVALID_STATE', `snapshot '${meta.name}' has ${meta.layers.length} disks, the VM has ${disks.length}`);
    const overlays: (string | null)[] = [];
    for (const [i, d] of disks.entries()) {
      const layer = meta.layers[i];
      if (!layer) {
        overlays.push(null);
        continue;
      }
      const next = `${d.path}.next`;
      rmSync(next, { force: true });
      await createDiskFile({ path: next, format: 'qcow2', backingFile: join(this.vmDir, layer), backingFormat: 'qcow2' });
      overlays.push(next);
    }
    this.switchOverlays(disks, overlays);
    this.setCurrent(meta.name);
  }

  /**
   * Deletes a snapshot (any one: a leaf or the middle of a chain). Its children take its parent; its layer goes
   * once nothing depends on it any more.
   */
  remove(name: string, roots: string[]): void {
    const meta = this.get(name);
    for (const other of this.list()) {
      if (other.parent === name) writeJsonAtomic(join(this.dir, other.name, META), { ...other, parent: meta.parent }, 0o600);
    }
    if (this.current() === name) this.setCurrent(meta.parent);
    const trash = join(this.dir, `.deleted-${name}-${randomBytes(3).toString('hex')}`);
    renameSync(join(this.dir, name), trash);
    fsyncDir(this.dir);
    rmSync(trash, { recursive: true, force: true });
    this.collectLayers(roots);
  }

  /**
   * Removes what a crash can leave behind (partial folders, `.next` overlays, unreferenced layers). `roots` are
   * the disk images of every VM (clones have overlays over this VM's layers).
   */
  sweep(disks: DiskConfig[], roots: string[]): void {
    if (!existsSync(this.dir)) return;
    for (const entry of readdirSync(this.dir))
      if (entry.startsWith('.partial-') || entry.startsWith('.deleted-'))
        rmSync(join(this.dir, entry), { recursive: true, force: true });
    for (const d of disks) rmSync(`${d.path}.next`, { force: true });
    this.collectLayers(roots);
  }

  /** Deletes layers that neither a snapshot nor a disk in `roots` reaches through its backing chain. */
  private collectLayers(roots: string[]): void {
    if (!existsSync(this.layersDir)) return;
    const reachable = new Set<string>();
    const walk = (path: string): void => {
      for (let p: string | null = resolve(path), depth = 0; p && depth < 32; depth++) {
        if (reachable.has(p)) return;
        reachable.add(p);
        p = backingOf(p);
      }
    };
    for (const r of roots) walk(r);
    for (const s of this.list()) for (const l of s.layers) if (l) walk(join(this.vmDir, l));
    for (const entry of readdirSync(this.layersDir)) {
      const p = join(this.layersDir, entry);
      if (!reachable.has(p)) unlinkSync(p);
    }
  }

  private relative(abs: string): string {
    return abs.slice(this.vmDir.length + 1);
  }

  private read(name: string): SnapshotMeta {
    const path = join(this.dir, name, META);
    const m = JSON.parse(readFileSync(path, 'utf8')) as SnapshotMeta;
    if (m.format !== SNAPSHOT_FORMAT || m.name !== name || !Array.isArray(m.layers))
      throw new HostError('STORAGE_ERROR', `${path} is not a snapshot description`);
    for (const l of m.layers)
      if (l !== null && (typeof l !== 'string' || !l.startsWith('snapshots/layers/') || l.includes('..')))
        throw new HostError('STORAGE_ERROR', `${path}: bad layer ${JSON.stringify(l)}`);
    return m;
  }
}

/**
 * A layer is never written again, so it must be clean when frozen: clusters leaked by an earlier crash of the VM
 * (refcount decrements that never reached the file; harmless, but `qemu-img check` reports them) are given back.
 */
async function repairLeaks(path: string): Promise<void> {
  const disk = await openDisk(path, { format: 'qcow2', readOnly: false, forRepair: true });
  try {
    if (disk instanceof Qcow2Image && (await disk.check('none')).leaks > 0) await disk.check('leaks');
  } finally {
    await disk.close();
  }
}

/** The absolute backing file of a qcow2 image, or null (raw, no backing, unreadable). */
export function backingOf(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    const size = fstatSync(fd).size;
    const head = new Uint8Array(Math.min(size, 2 ** MAX_CLUSTER_BITS));
    readSync(fd, head, 0, head.length, 0);
    const h = parseHeader(head, size);
    return h.backingFile ? resolve(dirname(path), h.backingFile) : null;
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}
