/**
 * Saving a whole Machine into state-file sections, and loading them into a fresh Machine built from the same
 * configuration. What is saved: a header (engine, architecture, board shape and its hash), the board (running
 * harts, SBI HSM, mtime), every hart's architectural state, CLINT, PLIC, UART, RTC, syscon, each virtio device
 * (transport, queue indices, in-flight chains, device model) and RAM as its allocated chunks (all-zero chunks
 * as a flag). TLBs and decode caches are never saved.
 *
 * Loading checks everything before it changes anything: the header against this machine, every section's
 * checksum, decoding and shape (against a state freshly saved by the same device), and the RAM chunk table.
 * Any failure is a SnapshotError naming its section; the machine is then left as it was.
 */
import type { DeviceState, MmioDevice, Stateful } from '../../devices/device.js';
import type { BoardState, Machine } from '../machine.js';
import { crc32c } from './crc32c.js';
import { SnapshotError } from './errors.js';
import { encodeStateFile, type ChunkInput, type ChunkRef, type SectionInput, type StateFile, type ChunkTable } from './format.js';
import { checkShape, type StateValue } from './values.js';

export const ENGINE = 'typevisor-rv64-interpreter';
export const ARCH = 'riscv64';

/** What a state file says about the machine it came from; loading refuses a machine of another shape. */
export interface BoardShape {
  harts: number;
  memoryBytes: number;
  chunkSize: number;
  /** State type of the device in each occupied virtio slot, in slot order. */
  virtio: string[];
  builtinSbi: boolean;
}

export interface StateHeader {
  formatVersion: number;
  engine: string;
  arch: string;
  /** CRC-32C (hex) of the board shape: equal hashes, compatible machines. */
  configHash: string;
  board: BoardShape;
  createdAtMs: number;
}

type Device = MmioDevice & Stateful;

function isStateful(d: MmioDevice): d is Device {
  const s = d as Partial<Stateful>;
  return typeof s.saveState === 'function' && typeof s.loadState === 'function';
}

function boardShape(m: Machine): BoardShape {
  return {
    harts: m.harts.length,
    memoryBytes: m.ram.size,
    chunkSize: 2 ** m.ram.chunkShift,
    virtio: m.virtioDevices.map((d) => (isStateful(d) ? d.saveState().type : `stateless:${d.name}`)),
    builtinSbi: !!m.sbi,
  };
}

export function configHash(shape: BoardShape): string {
  const text = `${shape.harts}|${shape.memoryBytes}|${shape.chunkSize}|${shape.virtio.join(',')}|${shape.builtinSbi}`;
  return crc32c(new TextEncoder().encode(text)).toString(16).padStart(8, '0');
}

/** The devices that live on every board, by section name. */
function fixedDevices(m: Machine): [string, Device][] {
  return [
    ['clint', m.clint],
    ['plic', m.plic],
    ['uart0', m.uart],
    ['rtc', m.rtc],
    ['syscon', m.test],
  ];
}

function virtioSections(m: Machine): [string, Device][] {
  return m.virtioDevices.map((d, i) => {
    if (!isStateful(d)) throw new SnapshotError('NOT_SUPPORTED', `virtio${i}`, `${d.name} has no saveState`);
    return [`virtio${i}`, d];
  });
}

function isZero(bytes: Uint8Array): boolean {
  const words = new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 3);
  // Float64 compare: +0 and -0 both equal 0, so check the sign bit apart via a second pass only when needed.
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  const ints = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
  for (let i = 1; i < ints.length; i += 2) if (ints[i] !== 0) return false;
  return true;
}

export interface CaptureOptions {
  /** Extra value sections of the caller (e.g. the VM configuration), stored under `x-<name>`. */
  extra?: Record<string, unknown>;
  /** Copy RAM chunks (so the machine may run on while the file is written). Default: reference them. */
  copyRam?: boolean;
  nowMs?: number;
}

/**
 * The machine's state as file sections. The machine should be paused (or not yet started): RAM chunks are
 * referenced, not copied, unless `copyRam` is set.
 */
export function captureMachineState(m: Machine, opts: CaptureOptions = {}): SectionInput[] {
  const shape = boardShape(m);
  const header: StateHeader = {
    formatVersion: 1,
    engine: ENGINE,
    arch: ARCH,
    configHash: configHash(shape),
    board: shape,
    createdAtMs: opts.nowMs ?? Date.now(),
  };
  const sections: SectionInput[] = [{ kind: 'value', name: 'header', value: header }];
  sections.push({ kind: 'value', name: 'board', value: m.saveBoardState() });
  m.harts.forEach((h, i) => {
    if (!h.saveArchState) throw new SnapshotError('NOT_SUPPORTED', `hart${i}`, 'this hart cannot export its state');
    sections.push({ kind: 'value', name: `hart${i}`, value: h.saveArchState() });
  });
  for (const [name, dev] of [...fixedDevices(m), ...virtioSections(m)])
    sections.push({ kind: 'value', name, value: dev.saveState() });
  for (const [name, value] of Object.entries(opts.extra ?? {})) sections.push({ kind: 'value', name: `x-${name}`, value });
  const chunks: ChunkInput[] = [];
  for (const index of m.ram.storedChunkIndexes()) {
    const bytes = m.ram.chunkBytes(index);
    if (!bytes) continue;
    chunks.push({ index, bytes: isZero(bytes) ? null : opts.copyRam ? bytes.slice() : bytes });
  }
  sections.push({
    kind: 'chunks',
    name: 'ram',
    chunkSize: 2 ** m.ram.chunkShift,
    chunkCount: Math.ceil(m.ram.size / 2 ** m.ram.chunkShift),
    chunks,
  });
  return sections;
}

/** captureMachineState laid out as file parts (see format.ts). */
export function encodeMachineState(m: Machine, opts: CaptureOptions = {}): { parts: Uint8Array[]; length: number } {
  return encodeStateFile(captureMachineState(m, opts));
}

/** Reads and checks the header of a state file. */
export function readStateHeader(file: StateFile): StateHeader {
  const v = file.value('header');
  const template: StateHeader = {
    formatVersion: 1,
    engine: '',
    arch: '',
    configHash: '',
    board: { harts: 1, memoryBytes: 1, chunkSize: 1, virtio: [''], builtinSbi: true },
    createdAtMs: 0,
  };
  checkShape(template, v, 'header');
  const h = v as unknown as StateHeader;
  if (h.engine !== ENGINE || h.arch !== ARCH)
    throw new SnapshotError('INCOMPATIBLE', 'header', `saved by engine ${h.engine} (${h.arch}); this is ${ENGINE} (${ARCH})`);
  if (h.configHash !== configHash(h.board))
    throw new SnapshotError('BAD_VALUE', 'header', 'the config hash does not match the board');
  return h;
}

export interface RestoreOptions {
  /** Read RAM chunks on first touch instead of now (the file must stay readable while the machine runs). */
  lazyRam?: boolean;
  /**
   * With lazyRam: a chunk read on first touch goes to the guest at once, and the same chunk of the file is read
   * again and checked against its CRC later, through `RestoreReport.checkRam` (a CRC-32C of 2 MiB costs
   * milliseconds in JS, and so does a copy of the bytes kept for it: reading again from the page cache is off the
   * guest's path). For a state file the host wrote itself and nothing else writes; a failed check must stop the
   * machine, and the file must stay open until no check is left.
   */
  checkLater?: boolean;
}

/** Lazily read chunks waiting for their CRC check, at most this many (the oldest is checked first). */
const MAX_UNCHECKED = 8;

export interface RestoreReport {
  header: StateHeader;
  /** Chunks holding data in the file (excluding all-zero ones). */
  ramChunks: number;
  /** The caller's extra sections (`x-<name>` in the file), decoded but not checked. */
  extra: Record<string, StateValue>;
  /**
   * checkLater: checks up to `max` chunks read but not checked yet; returns how many are still waiting. Throws a
   * SnapshotError (CHECKSUM_MISMATCH, section 'ram') for a corrupt one.
   */
  checkRam(max: number): number;
  /** Milliseconds per step: decoding and checking the sections, setting up RAM, loading harts and board, devices. */
  phases: { decode: number; ram: number; harts: number; devices: number };
}

/**
 * Loads a state file into `m`, which must be built from the same configuration and not yet started (its boot
 * images are replaced wholesale). Throws a SnapshotError naming the section on any incompatibility or
 * corruption, before changing the machine.
 */
export function restoreMachineState(m: Machine, file: StateFile, opts: RestoreOptions = {}): RestoreReport {
  if (m.state !== 'created')
    throw new SnapshotError('NOT_SUPPORTED', 'file', 'state can only be loaded before the machine starts');
  const t0 = performance.now();
  const header = readStateHeader(file);
  const shape = boardShape(m);
  if (header.configHash !== configHash(shape)) {
    const diffs = (Object.keys(shape) as (keyof BoardShape)[])
      .filter((k) => JSON.stringify(shape[k]) !== JSON.stringify(header.board[k]))
      .map((k) => `${k}: saved ${JSON.stringify(header.board[k])}, here ${JSON.stringify(shape[k])}`);
    throw new SnapshotError('INCOMPATIBLE', 'header', `the board differs (${diffs.join('; ')})`);
  }

  // 1. Decode and check every section.
  const board = file.value('board');
  checkShape(m.saveBoardState(), board, 'board');
  const harts = m.harts.map((h, i) => {
    const name = `hart${i}`;
    if (!h.saveArchState || !h.loadArchState) throw new SnapshotError('NOT_SUPPORTED', name, 'this hart cannot import state');
    const v = file.value(name);
    checkShape(h.saveArchState(), v, name);
    return { name, hart: h, state: v as unknown as DeviceState };
  });
  const devices = [...fixedDevices(m), ...virtioSections(m)].map(([name, dev]) => {
    const v = file.value(name);
    checkShape(dev.saveState(), v, name);
    return { name, dev, state: v as unknown as DeviceState };
  });
  const extra: Record<string, StateValue> = {};
  for (const name of file.names()) if (name.startsWith('x-')) extra[name.slice(2)] = file.value(name);
  const t1 = performance.now();
  const table: ChunkTable = file.chunkTable('ram');
  if (table.chunkSize !== shape.chunkSize || table.chunkCount !== Math.ceil(m.ram.size / shape.chunkSize))
    throw new SnapshotError('INCOMPATIBLE', 'ram', `${table.chunkCount} chunks of ${table.chunkSize} bytes do not fit this RAM`);
  const chunkLength = (index: number): number => Math.min(table.chunkSize, m.ram.size - index * table.chunkSize);
  for (const c of table.chunks)
    if (!c.zero && c.length !== chunkLength(c.index))
      throw new SnapshotError('BAD_VALUE', 'ram', `chunk ${c.index} holds ${c.length} bytes, expected ${chunkLength(c.index)}`);
  const stored = table.chunks.filter((c) => !c.zero);
  const byIndex = new Map(stored.map((c) => [c.index, c]));
  const eager = new Map<number, Uint8Array>();
  if (!opts.lazyRam) for (const c of stored) eager.set(c.index, file.readChunk('ram', c).slice());

  // 2. Apply: RAM, harts, the board, then devices (which re-drive interrupt lines and re-submit virtio chains).
  const unchecked: ChunkRef[] = [];
  const checkRam = (max: number): number => {
    for (let i = 0; i < max && unchecked.length > 0; i++) file.readChunk('ram', unchecked.shift()!);
    return unchecked.length;
  };
  const readLazy = (ref: ChunkRef, into: Uint8Array | undefined): Uint8Array => {
    if (!opts.checkLater) return file.readChunk('ram', ref, into);
    const bytes = file.readChunkUnchecked('ram', ref, into);
    if (unchecked.length >= MAX_UNCHECKED) checkRam(1);
    unchecked.push(ref);
    return bytes;
  };
  m.ram.setLazyChunks(
    stored.map((c) => c.index),
    (index, into) => eager.get(index) ?? readLazy(byIndex.get(index)!, into ?? undefined),
  );
  if (!opts.lazyRam) {
    m.ram.fillLazyChunks(Infinity);
    eager.clear();
  }
  const apply = (name: string, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      if (err instanceof SnapshotError) throw err;
      throw new SnapshotError('BAD_VALUE', name, err instanceof Error ? err.message : String(err));
    }
  };
  const t2 = performance.now();
  for (const h of harts) apply(h.name, () => h.hart.loadArchState!(h.state));
  apply('board', () => m.loadBoardState(board as unknown as BoardState));
  const t3 = performance.now();
  for (const d of devices) apply(d.name, () => d.dev.loadState(d.state));
  const phases = { decode: t1 - t0, ram: t2 - t1, harts: t3 - t2, devices: performance.now() - t3 };
  return { header, ramChunks: stored.length, extra, checkRam, phases };
}
