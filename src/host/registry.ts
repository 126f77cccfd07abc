/**
 * The VM registry on disk: $HOME/vms/<name>/vm.json, one folder per VM holding its disks, console log and
 * snapshots. vm.json is always replaced atomically, so a crash at any moment leaves either the old or the new
 * record, and a person can read and edit it.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeJsonAtomicAsync } from './atomic.js';
import { isValidVmName } from './home.js';
import { isVmState, type VmState } from './lifecycle.js';
import type { VmConfig } from '../vm/config.js';
import { LatestValueWriter } from './write-queue.js';
import type { CpuSettings } from './cpu/settings.js';
import type { MemorySettings } from './memory/settings.js';

export const RECORD_SCHEMA = 1;

export interface VmRecord {
  schema: typeof RECORD_SCHEMA;
  name: string;
  uuid: string;
  createdAt: string;
  updatedAt: string;
  state: VmState;
  /** Why the VM entered its state, when it was not a plain user action (crash message, daemon restart...). */
  stateReason?: string;
  autostart: boolean;
  /** The image the VM was created from, if any. */
  image?: string;
  /** Text on the console that means "booted" (from the image), for tools that wait for boot. */
  bootMarker?: string;
  config: VmConfig;
  /** CPU allocation (absent in records written before it existed: the defaults). */
  cpu?: CpuSettings;
  /** Addresses the VM's networks leased to its NICs (mac → IPv4), kept so they stay stable. */
  leases?: Record<string, string>;
  /** Memory floor and weight (absent: no floor below the maximum, weight 100). */
  memory?: MemorySettings;
  /** The user first-boot configuration created for logins (`typevisor ssh`). */
  login?: { user: string };
}

export class RecordError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = 'RecordError';
  }
}

/** Parses an untrusted vm.json into a record, checking the fields the host relies on. */
export function parseRecord(path: string, text: string): VmRecord {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new RecordError(path, `not JSON (${(err as Error).message})`);
  }
  if (typeof v !== 'object' || v === null) throw new RecordError(path, 'not an object');
  const r = v as Partial<VmRecord>;
  if (r.schema !== RECORD_SCHEMA) throw new RecordError(path, `unsupported schema ${String(r.schema)}`);
  if (!isValidVmName(r.name)) throw new RecordError(path, 'bad name');
  if (!isVmState(r.state)) throw new RecordError(path, `bad state ${String(r.state)}`);
  if (typeof r.config !== 'object' || r.config === null) throw new RecordError(path, 'missing config');
  if (typeof r.uuid !== 'string') throw new RecordError(path, 'missing uuid');
  return { ...r, autostart: r.autostart === true } as VmRecord;
}

export class Registry {
  /** One ordered writer per VM, so its vm.json writes land in order without blocking the event loop. */
  private readonly writers = new Map<string, LatestValueWriter<VmRecord>>();

  constructor(readonly vmsDir: string) {
    mkdirSync(vmsDir, { recursive: true, mode: 0o700 });
  }

  vmDir(name: string): string {
    if (!isValidVmName(name)) throw new Error(`invalid VM name ${JSON.stringify(name)}`);
    return join(this.vmsDir, name);
  }

  recordPath(name: string): string {
    return join(this.vmDir(name), 'vm.json');
  }

  exists(name: string): boolean {
    return existsSync(this.vmDir(name));
  }

  /** Every readable record; unreadable folders are reported, not fatal. */
  loadAll(onBad: (err: Error) => void = () => {}): VmRecord[] {
    const out: VmRecord[] = [];
    for (const entry of readdirSync(this.vmsDir, { withFileTypes: true })) {
      if (!entry.isDirectory() || !isValidVmName(entry.name)) continue;
      const path = join(this.vmsDir, entry.name, 'vm.json');
      try {
        const rec = parseRecord(path, readFileSync(path, 'utf8'));
        if (rec.name !== entry.name) throw new RecordError(path, `name ${rec.name} does not match its folder`);
        out.push(rec);
      } catch (err) {
        onBad(err as Error);
      }
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Makes the VM's folder (and snapshots/); fails if it exists, so two creates can never share a folder. */
  createDir(name: string): string {
    const dir = this.vmDir(name);
    mkdirSync(dir, { mode: 0o700 });
    mkdirSync(join(dir, 'snapshots'), { mode: 0o700 });
    return dir;
  }

  /**
   * Replaces vm.json atomically (tmp + fsync + rename + directory fsync) off the event loop. Writes of one VM land
   * in the order they were asked for; the promise settles when this record, or a newer one, is on disk.
   */
  save(rec: VmRecord): Promise<void> {
    const path = this.recordPath(rec.name);
    let writer = this.writers.get(rec.name);
    if (!writer) {
      writer = new LatestValueWriter((r: VmRecord) => writeJsonAtomicAsync(path, r, 0o600));
      this.writers.set(rec.name, writer);
    }
    return writer.write(rec);
  }

  /** Resolves when every vm.json write asked for so far (for one VM, or all) has finished. */
  async settled(name?: string): Promise<void> {
    const writers = name === undefined ? [...this.writers.values()] : [this.writers.get(name)];
    await Promise.all(writers.map((w) => w?.idle()));
  }

  /** Removes a VM's folder: renamed away first (atomic), then deleted, so a crash never leaves half a VM. */
  async remove(name: string): Promise<void> {
    const dir = this.vmDir(name);
    await this.settled(name);
    this.writers.delete(name);
    if (!existsSync(dir)) return;
    const trash = join(this.vmsDir, `.deleted-${name}-${randomBytes(4).toString('hex')}`);
    renameSync(dir, trash);
    await rm(trash, { recursive: true, force: true });
  }

  /** Removes leftovers of deletes or creates interrupted by a crash. */
  sweep(): void {
    for (const entry of readdirSync(this.vmsDir)) {
      if (entry.startsWith('.deleted-')) rmSync(join(this.vmsDir, entry), { recursive: true, force: true });
    }
  }
}
