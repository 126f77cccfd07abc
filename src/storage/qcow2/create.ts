import { StorageError } from '../backend.js';
import { HostFile } from '../file.js';
import {
  COMPAT_LAZY_REFCOUNTS,
  DEFAULT_CLUSTER_BITS,
  MAX_CLUSTER_BITS,
  MIN_CLUSTER_BITS,
  QCOW_MAX_L1_SIZE,
  QCOW_MAX_REFTABLE_SIZE,
  buildHeader,
  l1EntriesFor,
} from './format.js';
import { offsetWords, setEntry, setRefcount } from './tables.js';

export interface Qcow2CreateOptions {
  size: number;
  clusterSize?: number;
  /** Stored as written (relative names resolve against the image's directory when opened). */
  backingFile?: string;
  backingFormat?: string;
  lazyRefcounts?: boolean;
  /** 1..64, a power of two (refcount_order = log2); default 16 like QEMU. */
  refcountBits?: number;
}

/**
 * Writes a new, empty qcow2 v3 image: header in cluster 0, the L1 table after it, then refcount blocks
 * and the refcount table describing all of those. Nothing else is allocated (thin provisioning).
 */
export async function createQcow2(path: string, opts: Qcow2CreateOptions): Promise<void> {
  const clusterSize = opts.clusterSize ?? 2 ** DEFAULT_CLUSTER_BITS;
  const clusterBits = Math.log2(clusterSize);
  if (!Number.isInteger(clusterBits) || clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw new StorageError('UNSUPPORTED', `cluster size ${clusterSize} must be a power of two between 512 and 2M`);
  }
  const refBits = opts.refcountBits ?? 16;
  const refcountOrder = Math.log2(refBits);
  if (!Number.isInteger(refcountOrder) || refcountOrder < 0 || refcountOrder > 6) {
    throw new StorageError('UNSUPPORTED', `refcount bits ${refBits} must be a power of two from 1 to 64`);
  }
  const size = Math.ceil(opts.size / 512) * 512;
  if (!Number.isSafeInteger(size) || size < 0 || size > 2 ** 50)
    throw new StorageError('UNSUPPORTED', `invalid size ${opts.size}`);
  const l1Size = l1EntriesFor(size, clusterBits);
  if (l1Size * 8 > QCOW_MAX_L1_SIZE)
    throw new StorageError('UNSUPPORTED', 'disk too large for this cluster size (L1 table over 32 MiB)');
  const per = (clusterSize * 8) / refBits;
  const l1Clusters = Math.max(1, Math.ceil((l1Size * 8) / clusterSize));
  const base = 1 + l1Clusters;
  let blocks = 1;
  let tableClusters: number;
  for (;;) {
    tableClusters = Math.ceil((blocks * 8) / clusterSize);
    const need = Math.ceil((base + blocks + tableClusters) / per);
    if (need <= blocks) break;
    blocks = need;
  }
  if (tableClusters * clusterSize > QCOW_MAX_REFTABLE_SIZE) throw new StorageError('UNSUPPORTED', 'disk too large');
  const total = base + blocks + tableClusters;
  const header = buildHeader({
    version: 3,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits,
    size,
    cryptMethod: 0,
    l1Size,
    l1TableOffset: clusterSize,
    refcountTableOffset: (base + blocks) * clusterSize,
    refcountTableClusters: tableClusters,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatibleFeatures: 0,
    compatibleFeatures: opts.lazyRefcounts ? COMPAT_LAZY_REFCOUNTS : 0,
    autoclearFeatures: 0,
    refcountOrder,
    headerLength: 112,
    compressionType: 0,
    backingFile: opts.backingFile ?? null,
    backingFormat: opts.backingFile ? (opts.backingFormat ?? null) : null,
    featureNames: new Map(),
  });
  const file = await HostFile.create(path);
  try {
    await file.truncate(total * clusterSize); // the L1 table is all zeros: leave it sparse
    await file.write(0, header);
    const table = new Uint8Array(tableClusters * clusterSize);
    for (let k = 0; k < blocks; k++) {
      const block = new Uint8Array(clusterSize);
      for (let c = k * per; c < Math.min(total, (k + 1) * per); c++) setRefcount(block, c - k * per, refBits, 1);
      await file.write((base + k) * clusterSize, block);
      const [hi, lo] = offsetWords((base + k) * clusterSize);
      setEntry(table, k, hi, lo);
    }
    await file.write((base + blocks) * clusterSize, table);
    await file.sync();
  } finally {
    await file.close();
  }
}
