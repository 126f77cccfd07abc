/**
 * qcow2 on-disk format (QEMU docs/interop/qcow2.txt): constants, the header as a typed value, and its
 * parser. Everything from the file is validated here before any other code acts on it; each failure is a
 * StorageError('BAD_IMAGE' | 'UNSUPPORTED') whose message names the field.
 */
import { StorageError } from '../backend.js';

export const QCOW_MAGIC = 0x514649fb; // "QFI\xfb"
export const V2_HEADER_LENGTH = 72;
export const V3_HEADER_LENGTH = 104; // without the optional compression_type byte
export const CREATE_HEADER_LENGTH = 112; // what QEMU writes: 104 + compression_type + padding

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
export const DEFAULT_CLUSTER_BITS = 16;

/** Caps taken from QEMU (block/qcow2.h) so a hostile header cannot make us allocate gigabytes. */
export const QCOW_MAX_L1_SIZE = 32 * 2 ** 20; // bytes
export const QCOW_MAX_REFTABLE_SIZE = 8 * 2 ** 20; // bytes
export const MAX_BACKING_FILE_NAME = 1023;

// incompatible_features bits
export const INCOMPAT_DIRTY = 1 << 0; // refcounts may be inconsistent
export const INCOMPAT_CORRUPT = 1 << 1; // metadata corrupt: no writes
export const INCOMPAT_DATA_FILE = 1 << 2; // external data file
export const INCOMPAT_COMPRESSION = 1 << 3; // compression_type field in use
export const INCOMPAT_EXTL2 = 1 << 4; // extended L2 entries (subclusters)
export const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT;
// compatible_features bits
export const COMPAT_LAZY_REFCOUNTS = 1 << 0;

// header extension types
export const HDR_EXT_END = 0x00000000;
export const HDR_EXT_BACKING_FORMAT = 0xe2792aca;
export const HDR_EXT_FEATURE_TABLE = 0x6803f857;
export const HDR_EXT_BITMAPS = 0x23852875;
export const HDR_EXT_CRYPTO = 0x0537be77;
export const HDR_EXT_DATA_FILE = 0x44415441;

// L1/L2 entry bits, kept as bits of the high 32-bit word (bit 63 => 0x80000000 of hi)
export const OFLAG_COPIED_HI = 0x80000000; // bit 63: refcount is exactly 1
export const OFLAG_COMPRESSED_HI = 0x40000000; // bit 62: compressed cluster (L2 only)
export const OFLAG_ZERO_LO = 0x1; // bit 0: cluster reads as zeros (L2, v3)
/** Bits 9..55: host offset. In the high word that is bits 0..23. */
export const OFFSET_MASK_HI = 0x00ffffff;
export const OFFSET_MASK_LO = 0xfffffe00;
export const L1E_RESERVED_HI = 0x7f000000; // bits 56..62
export const L1E_RESERVED_LO = 0x1ff; // bits 0..8
export const L2E_RESERVED_HI = 0x3f000000; // bits 56..61
export const L2E_RESERVED_LO = 0x1fe; // bits 1..8

export const FEATURE_NAMES: ReadonlyArray<[type: number, bit: number, name: string]> = [
  [0, 0, 'dirty bit'],
  [0, 1, 'corrupt bit'],
  [0, 2, 'external data file'],
  [0, 3, 'compression type'],
  [0, 4, 'extended L2 entries'],
  [1, 0, 'lazy refcounts'],
  [2, 0, 'bitmaps'],
  [2, 1, 'raw external data'],
];

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: number;
  compatibleFeatures: number;
  autoclearFeatures: number;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** From the header extensions and the backing file name. */
  backingFile: string | null;
  backingFormat: string | null;
  featureNames: Map<string, string>;
}

function bad(msg: string): StorageError {
  return new StorageError('BAD_IMAGE', `qcow2: ${msg}`);
}

/** Reads a big-endian u64 that must fit a JS safe integer (offsets and sizes). */
export function u64(buf: Uint8Array, pos: number, field: string): number {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const hi = dv.getUint32(pos);
  const lo = dv.getUint32(pos + 4);
  if (hi > 0x1fffff) throw bad(`${field} (0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}) is too large`);
  return hi * 2 ** 32 + lo;
}

/** Feature bit fields are u64; we only know bits below 32, so anything above becomes an unknown bit. */
function featureBits(dv: DataView, pos: number): { bits: number; highUnknown: boolean } {
  return { bits: dv.getUint32(pos + 4), highUnknown: dv.getUint32(pos) !== 0 };
}

export function l2EntriesPerTable(clusterBits: number): number {
  return 2 ** (clusterBits - 3);
}

/** L1 entries needed to map `size` bytes. */
export function l1EntriesFor(size: number, clusterBits: number): number {
  return Math.ceil(size / 2 ** (clusterBits * 2 - 3));
}

/**
 * Parses and validates the header and its extensions. `head` holds the first cluster (or the whole file
 * if smaller) and `fileSize` the host file length, so every table offset can be checked against it.
 */
export function parseHeader(head: Uint8Array, fileSize: number): Qcow2Header {
  if (head.length < V2_HEADER_LENGTH) throw bad(`file too small for a header (${head.length} bytes)`);
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (dv.getUint32(0) !== QCOW_MAGIC) throw bad('bad magic (not a qcow2 image)');
  const version = dv.getUint32(4);
  if (version !== 2 && version !== 3) {
    throw new StorageError('UNSUPPORTED', `qcow2: version ${version} is not supported (only 2 and 3)`);
  }
  const clusterBits = dv.getUint32(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw bad(`cluster_bits ${clusterBits} outside ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}`);
  }
  const clusterSize = 2 ** clusterBits;
  const h: Qcow2Header = {
    version,
    backingFileOffset: u64(head, 8, 'backing_file_offset'),
    backingFileSize: dv.getUint32(16),
    clusterBits,
    size: u64(head, 24, 'size'),
    cryptMethod: dv.getUint32(32),
    l1Size: dv.getUint32(36),
    l1TableOffset: u64(head, 40, 'l1_table_offset'),
    refcountTableOffset: u64(head, 48, 'refcount_table_offset'),
    refcountTableClusters: dv.getUint32(56),
    nbSnapshots: dv.getUint32(60),
    snapshotsOffset: u64(head, 64, 'snapshots_offset'),
    incompatibleFeatures: 0,
    compatibleFeatures: 0,
    autoclearFeatures: 0,
    refcountOrder: 4,
    headerLength: V2_HEADER_LENGTH,
    compressionType: 0,
    backingFile: null,
    backingFormat: null,
    featureNames: new Map(),
  };
  let highUnknownIncompat = false;
  if (version === 3) {
    if (head.length < V3_HEADER_LENGTH) throw bad('file too small for a version 3 header');
    const incompat = featureBits(dv, 72);
    h.incompatibleFeatures = incompat.bits;
    highUnknownIncompat = incompat.highUnknown;
    h.compatibleFeatures = featureBits(dv, 80).bits;
    h.autoclearFeatures = featureBits(dv, 88).bits;
    h.refcountOrder = dv.getUint32(96);
    h.headerLength = dv.getUint32(100);
    if (h.headerLength < V3_HEADER_LENGTH || h.headerLength > clusterSize || h.headerLength > head.length) {
      throw bad(`header_length ${h.headerLength} is invalid`);
    }
    if (h.headerLength > V3_HEADER_LENGTH) h.compressionType = dv.getUint8(104);
  }
  parseExtensions(head, h);

  // Incompatible features: refuse anything we cannot honour, naming it.
  const unknown = h.incompatibleFeatures & ~INCOMPAT_KNOWN;
  if (unknown !== 0 || highUnknownIncompat) {
    const names: string[] = [];
    for (let bit = 0; bit < 32; bit++) {
      if (unknown & (1 << bit)) names.push(h.featureNames.get(`0:${bit}`) ?? `unknown bit ${bit}`);
    }
    if (highUnknownIncompat) names.push('unknown bits 32..63');
    throw new StorageError('UNSUPPORTED', `qcow2: unsupported incompatible features: ${names.join(', ')}`);
  }
  if (h.compressionType !== 0) {
    throw new StorageError('UNSUPPORTED', `qcow2: compression type ${h.compressionType} is not supported (zlib only)`);
  }
  if (h.cryptMethod !== 0) throw new StorageError('UNSUPPORTED', 'qcow2: encrypted images are not supported');
  if (h.refcountOrder > 6) throw bad(`refcount_order ${h.refcountOrder} is greater than 6`);

  // Sizes and table placement.
  if (h.size > Number.MAX_SAFE_INTEGER - clusterSize) throw bad(`virtual size ${h.size} is too large`);
  const l1Needed = l1EntriesFor(h.size, clusterBits);
  if (h.l1Size * 8 > QCOW_MAX_L1_SIZE) throw bad(`L1 table of ${h.l1Size} entries is larger than the 32 MiB limit`);
  if (h.l1Size < l1Needed) throw bad(`L1 table has ${h.l1Size} entries, the virtual size needs ${l1Needed}`);
  if (h.l1Size > 0) checkTable('L1 table', h.l1TableOffset, h.l1Size * 8, clusterSize, fileSize);
  if (h.refcountTableClusters === 0) throw bad('refcount table has no clusters');
  if (h.refcountTableClusters * clusterSize > QCOW_MAX_REFTABLE_SIZE) {
    throw bad(`refcount table of ${h.refcountTableClusters} clusters is larger than the 8 MiB limit`);
  }
  checkTable('refcount table', h.refcountTableOffset, h.refcountTableClusters * clusterSize, clusterSize, fileSize);
  if (h.nbSnapshots > 65536) throw bad(`${h.nbSnapshots} snapshots is more than the 65536 limit`);
  if (h.nbSnapshots > 0) checkTable('snapshot table', h.snapshotsOffset, 1, clusterSize, fileSize);

  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize === 0 || h.backingFileSize > MAX_BACKING_FILE_NAME) {
      throw bad(`backing file name length ${h.backingFileSize} is invalid`);
    }
    const end = h.backingFileOffset + h.backingFileSize;
    if (end > clusterSize || end > head.length) throw bad('backing file name lies outside the header cluster');
    if (h.backingFileOffset < h.headerLength) throw bad('backing file name overlaps the header');
    h.backingFile = new TextDecoder().decode(head.subarray(h.backingFileOffset, end));
    if (h.backingFile.includes('\0')) throw bad('backing file name contains a NUL byte');
  }
  return h;
}

function checkTable(what: string, offset: number, bytes: number, clusterSize: number, fileSize: number): void {
  if (offset % clusterSize !== 0) throw bad(`${what} offset 0x${offset.toString(16)} is not cluster aligned`);
  if (offset === 0) throw bad(`${what} overlaps the header`);
  if (offset + bytes > fileSize) throw bad(`${what} (offset 0x${offset.toString(16)}) extends beyond the end of the file`);
}

/** Header extensions: from header_length to the backing file name (or the cluster end); unknown ones are skipped. */
function parseExtensions(head: Uint8Array, h: Qcow2Header): void {
  if (h.version === 2) return;
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const clusterSize = 2 ** h.clusterBits;
  const limit = Math.min(h.backingFileOffset > h.headerLength ? h.backingFileOffset : clusterSize, head.length);
  let pos = h.headerLength;
  // Each iteration consumes at least 8 bytes, so this terminates within one cluster.
  while (pos + 8 <= limit) {
    const type = dv.getUint32(pos);
    const len = dv.getUint32(pos + 4);
    pos += 8;
    if (type === HDR_EXT_END) return;
    if (len > limit - pos) throw bad(`header extension 0x${type.toString(16)} overruns the header cluster`);
    const data = head.subarray(pos, pos + len);
    if (type === HDR_EXT_BACKING_FORMAT) {
      h.backingFormat = new TextDecoder().decode(data).replace(/\0+$/, '');
    } else if (type === HDR_EXT_FEATURE_TABLE) {
      for (let i = 0; i + 48 <= data.length; i += 48) {
        const name = new TextDecoder().decode(data.subarray(i + 2, i + 48)).replace(/\0.*$/s, '');
        h.featureNames.set(`${data[i]}:${data[i + 1]}`, name);
      }
    } else if (type === HDR_EXT_DATA_FILE) {
      // An external data file is flagged by INCOMPAT_DATA_FILE, which we refuse by name.
    }
    pos += Math.ceil(len / 8) * 8;
  }
}

/** Serializes a version 3 header with its extensions and backing name into one cluster-sized buffer. */
export function buildHeader(h: Qcow2Header): Uint8Array {
  const clusterSize = 2 ** h.clusterBits;
  const buf = new Uint8Array(clusterSize);
  const dv = new DataView(buf.buffer);
  const put64 = (pos: number, v: number): void => {
    dv.setUint32(pos, Math.floor(v / 2 ** 32));
    dv.setUint32(pos + 4, v >>> 0);
  };
  dv.setUint32(0, QCOW_MAGIC);
  dv.setUint32(4, 3);
  dv.setUint32(20, h.clusterBits);
  put64(24, h.size);
  dv.setUint32(32, 0);
  dv.setUint32(36, h.l1Size);
  put64(40, h.l1TableOffset);
  put64(48, h.refcountTableOffset);
  dv.setUint32(56, h.refcountTableClusters);
  dv.setUint32(60, 0);
  put64(64, 0);
  put64(72, h.incompatibleFeatures);
  put64(80, h.compatibleFeatures);
  put64(88, h.autoclearFeatures);
  dv.setUint32(96, h.refcountOrder);
  dv.setUint32(100, CREATE_HEADER_LENGTH);
  buf[104] = 0; // compression_type zlib
  let pos = CREATE_HEADER_LENGTH;
  const ext = (type: number, data: Uint8Array): void => {
    dv.setUint32(pos, type);
    dv.setUint32(pos + 4, data.length);
    buf.set(data, pos + 8);
    pos += 8 + Math.ceil(data.length / 8) * 8;
  };
  const enc = new TextEncoder();
  if (h.backingFormat) ext(HDR_EXT_BACKING_FORMAT, enc.encode(h.backingFormat));
  const table = new Uint8Array(48 * FEATURE_NAMES.length);
  FEATURE_NAMES.forEach(([type, bit, name], i) => {
    table[i * 48] = type;
    table[i * 48 + 1] = bit;
    table.set(enc.encode(name), i * 48 + 2);
  });
  // The feature name table is optional: leave it out when a small cluster needs the room for the backing name.
  const nameBytes = h.backingFile ? enc.encode(h.backingFile).length : 0;
  if (pos + 8 + table.length + 8 + nameBytes <= clusterSize) ext(HDR_EXT_FEATURE_TABLE, table);
  ext(HDR_EXT_END, new Uint8Array(0));
  if (h.backingFile) {
    const name = enc.encode(h.backingFile);
    if (name.length > MAX_BACKING_FILE_NAME || pos + name.length > clusterSize) {
      throw new StorageError('UNSUPPORTED', 'qcow2: backing file name is too long');
    }
    buf.set(name, pos);
    put64(8, pos);
    dv.setUint32(16, name.length);
  }
  return buf;
}
