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
 *   snapshots/<snap>/revert-disk<i>.qcow2 an empty overlay over its layer, made ahead so a revert only renames it
 *
 * Crash safety: a snapshot's folder is built as `.partial-<snap>` and renamed into place last; an overlay is
 * created as `<disk>.next` (or a spare as `.tmp`) and renamed over the active image. A crash leaves a partial
 * folder, a `.next` or `.tmp` file or an unreferenced layer, all removed by sweep(); never a half snapshot or a
 * disk without its backing file.
 */
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fsyncDir, fsyncDirAsync, writeJsonAtomic } from './atomic.js';
import { open } from 'node:fs/promises';
import { createDiskFile } from './disks.js';
import { HostError } from './errors.js';
import { VM_NAME_RE } from './home.js';
import type { DiskConfig } from '../vm/config.js';
import { Qcow2Image } from '../storage/qcow2/image.js';
import { openDisk } from '../storage/index.js';
import { backingInfo, MERGE_SUFFIX, mergeLayerInto } from './layer-merge.js';

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

/** Who may rest on this VM's layers, across every VM of the host (clones rest on their source's layers). */
export interface LayerUsers {
  /** Every VM's disk images: what keeps layers alive. */
  roots: string[];
  /** Every image that may name a layer as its backing file: disks, and every VM's layers and spare overlays. */
  images: string[];
  /**
   * The disks a merge may rewrite: this VM's own, when it is not running (a running VM writes them; another VM's
   * disk could be opened by its own start meanwhile). Layers and spares, never written, may always be rewritten.
   */
  mergeableDisks: string[];
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

  /** Records the snapshot the disks now derive from; with `sync: false` atomic but not yet durable (see syncRevert). */
  setCurrent(name: string | null, sync = true): void {
    const path = join(this.dir, 'current');
    if (sync) return writeJsonAtomic(path, { current: name }, 0o600);
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ current: name }) + '\n', { mode: 0o600 });
    renameSync(tmp, path);
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
  switchOverlays(disks: DiskConfig[], overlays: (string | null)[], layers: (string | null)[] = [], sync = true): void {
    disks.forEach((d, i) => {
      const next = overlays[i];
      if (next) renameSync(next, d.path);
    });
    if (sync) for (const dir of new Set(disks.map((d) => dirname(d.path)))) fsyncDir(dir);
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

  /**
   * Spare overlays: for each of the snapshot's layers, an empty overlay over it, made ahead of time in the
   * snapshot's folder (created under a temporary name and renamed, so complete or absent) so that a revert only
   * renames it over the disk instead of creating and syncing a new image while the guest waits.
   */
  async prepareSpares(meta: SnapshotMeta): Promise<void> {
    let made = false;
    for (const [i, layer] of meta.layers.entries()) {
      const spare = this.sparePath(meta, i);
      if (!layer || existsSync(spare)) continue;
      const tmp = `${spare}.tmp`;
      rmSync(tmp, { force: true });
      await createDiskFile({ path: tmp, format: 'qcow2', backingFile: join(this.vmDir, layer), backingFormat: 'qcow2' });
      renameSync(tmp, spare);
      made = true;
    }
    if (made) await fsyncDirAsync(join(this.dir, meta.name));
  }

  private sparePath(meta: SnapshotMeta, disk: number): string {
    return join(this.dir, meta.name, `revert-disk${disk}.qcow2`);
  }

  /**
   * New overlays over the snapshot's layers (its spares when made, else created now), renamed over the VM's disks
   * (the old active images are dropped). `sync: false` leaves the fsyncs to syncRevert, after the reply.
   */
  async revertDisks(meta: SnapshotMeta, disks: DiskConfig[], sync = true): Promise<void> {
    if (meta.layers.length !== disks.length)
      throw new HostError('INVALID_STATE', `snapshot '${meta.name}' has ${meta.layers.length} disks, the VM has ${disks.length}`);
    const overlays: (string | null)[] = [];
    for (const [i, d] of disks.entries()) {
      const layer = meta.layers[i];
      if (!layer) {
        overlays.push(null);
        continue;
      }
      const spare = this.sparePath(meta, i);
      if (existsSync(spare) && backingOf(spare) === resolve(this.vmDir, layer)) {
        overlays.push(spare);
        continue;
      }
      const next = `${d.path}.next`;
      rmSync(next, { force: true });
      await createDiskFile({ path: next, format: 'qcow2', backingFile: join(this.vmDir, layer), backingFormat: 'qcow2' });
      overlays.push(next);
    }
    this.switchOverlays(disks, overlays, [], sync);
    this.setCurrent(meta.name, sync);
  }

  /**
   * Makes a revert done with `sync: false` durable. Until then a crash may bring back the disks as they were before
   * it (each image whole, old or new): the guest had not written anything durable since the revert anyway.
   */
  async syncRevert(disks: DiskConfig[]): Promise<void> {
    for (const dir of new Set(disks.map((d) => dirname(d.path)))) await fsyncDirAsync(dir);
    const fh = await open(join(this.dir, 'current'), 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsyncDirAsync(this.dir);
  }

  /**
   * Deletes a snapshot (any one: a leaf or the middle of a chain). Its children take its parent; its layer goes
   * once nothing depends on it any more, or is merged into the one image built on it (collectLayers).
   */
  async remove(name: string, users: LayerUsers): Promise<void> {
    const meta = this.get(name);
    for (const other of this.list()) {
      if (other.parent === name) writeJsonAtomic(join(this.dir, other.name, META), { ...other, parent: meta.parent }, 0o600);
    }
    if (this.current() === name) this.setCurrent(meta.parent);
    const trash = join(this.dir, `.deleted-${name}-${randomBytes(3).toString('hex')}`);
    renameSync(join(this.dir, name), trash);
    fsyncDir(this.dir);
    rmSync(trash, { recursive: true, force: true });
    await this.collectLayers(users);
  }

  /**
   * Removes what a crash can leave behind (partial folders, `.next`, `.tmp` and `.merge` files, half-written
   * `current` files, unreferenced
   * layers) and reclaims layers no snapshot owns (collectLayers).
   */
  async sweep(disks: DiskConfig[], users: LayerUsers): Promise<void> {
    if (!existsSync(this.dir)) return;
    for (const entry of readdirSync(this.dir)) {
      if (entry.startsWith('.partial-') || entry.startsWith('.deleted-'))
        rmSync(join(this.dir, entry), { recursive: true, force: true });
      // The temporary file of an atomic write of `current` (writeJsonAtomic, setCurrent) cut short by a crash.
      else if ((entry.startsWith('.current.') && entry.endsWith('.tmp')) || entry.startsWith('current.tmp-'))
        rmSync(join(this.dir, entry), { force: true });
      else if (isValidSnapshotName(entry))
        for (const f of readdirSync(join(this.dir, entry)))
          if (f.endsWith('.tmp')) rmSync(join(this.dir, entry, f), { force: true });
    }
    for (const d of disks) {
      rmSync(`${d.path}.next`, { force: true });
      rmSync(`${d.path}${MERGE_SUFFIX}`, { force: true });
    }
    if (existsSync(this.layersDir))
      for (const f of readdirSync(this.layersDir)) if (f.endsWith(MERGE_SUFFIX)) rmSync(join(this.layersDir, f), { force: true });
    await this.collectLayers(users);
  }

  /** This VM's layer files and spare overlays: images other VMs' layers may rest on, for LayerUsers.images. */
  ownImages(): string[] {
    if (!existsSync(this.dir)) return [];
    const out: string[] = [];
    if (existsSync(this.layersDir))
      for (const f of readdirSync(this.layersDir)) if (f.endsWith('.qcow2')) out.push(join(this.layersDir, f));
    for (const s of this.list())
      for (const f of readdirSync(join(this.dir, s.name)))
        if (/^revert-disk\d+\.qcow2$/.test(f)) out.push(join(this.dir, s.name, f));
    return out;
  }

  /**
   * Deletes layers that neither a snapshot nor a disk in `users.roots` reaches through its backing chain, then
   * reclaims each layer no snapshot owns (its snapshot was deleted) that exactly one image rests on, by merging it
   * into that image (src/host/layer-merge.ts) when that image may be rewritten (see LayerUsers.mergeableDisks). A
   * layer two images rest on stays (merging would copy its data twice); it goes once one of them does.
   */
  private async collectLayers(users: LayerUsers): Promise<void> {
    if (!existsSync(this.layersDir)) return;
    const reachable = new Set<string>();
    const walk = (path: string): void => {
      for (let p: string | null = resolve(path), depth = 0; p && depth < 32; depth++) {
        if (reachable.has(p)) return;
        reachable.add(p);
        p = backingOf(p);
      }
    };
    for (const r of users.roots) walk(r);
    const owned = new Set<string>();
    for (const s of this.list()) for (const l of s.layers) if (l) owned.add(join(this.vmDir, l));
    for (const l of owned) walk(l);
    for (const entry of readdirSync(this.layersDir)) {
      const p = join(this.layersDir, entry);
      if (!reachable.has(p)) unlinkSync(p);
    }
    const disks = new Set(users.roots.map((p) => resolve(p)));
    const mergeable = new Set(users.mergeableDisks.map((p) => resolve(p)));
    const canRewrite = (img: string): boolean => !disks.has(img) || mergeable.has(img);
    for (let round = 0; round < 16; round++) {
      const images = [...new Set([...users.images, ...this.ownImages()].map((p) => resolve(p)))];
      const restingOn = new Map<string, string[]>();
      for (const img of images) {
        const b = backingOf(img);
        if (b) restingOn.set(b, [...(restingOn.get(b) ?? []), img]);
      }
      const orphan = readdirSync(this.layersDir)
        .map((f) => join(this.layersDir, f))
        .find(
          (l) => l.endsWith('.qcow2') && !owned.has(l) && restingOn.get(l)?.length === 1 && canRewrite(restingOn.get(l)![0]!),
        );
      if (!orphan) return;
      await mergeLayerInto(restingOn.get(orphan)![0]!, orphan);
      unlinkSync(orphan);
      fsyncDir(this.layersDir);
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
  return backingInfo(path)?.path ?? null;
}
