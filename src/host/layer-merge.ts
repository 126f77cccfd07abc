/**
 * Reclaiming a disk layer that no snapshot owns any more (its snapshot was deleted from the middle of a chain):
 * its data is merged into the one image built on it, which then rests on the layer's own backing file, and the
 * layer can go. In qemu-img terms a `rebase` of the child onto its grandparent, done out of place: the merged
 * image is written beside the child under `<child>.merge`, synced, and renamed over the child, so a crash leaves
 * the old child (still over the layer) or the new one, never a mix; the `.merge` leftover is swept.
 *
 * The child's view of the disk does not change: every cluster the child or the layer maps is copied as the child
 * reads it (zero clusters stay zero clusters, so the grandparent cannot show through), everything else is left
 * unallocated and still comes from the grandparent. A process holding the old child open keeps reading the same
 * data from the old files until it closes them.
 */
import { chmodSync, closeSync, fstatSync, openSync, readSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fsyncDir } from './atomic.js';
import { createDisk, openDisk, Qcow2Image } from '../storage/index.js';
import { MAX_CLUSTER_BITS, parseHeader } from '../storage/qcow2/format.js';

export const MERGE_SUFFIX = '.merge';

export class LayerMergeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LayerMergeError';
  }
}

/** The backing file a qcow2 image names (absolute) and its recorded format, or null (none, raw, unreadable). */
export function backingInfo(path: string): { path: string; format: 'raw' | 'qcow2' | null } | null {
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
    if (!h.backingFile) return null;
    const format = h.backingFormat === 'raw' || h.backingFormat === 'qcow2' ? h.backingFormat : null;
    return { path: resolve(dirname(path), h.backingFile), format };
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Merges `layer` into `child` (whose backing file it must be): afterwards `child` reads the same but rests on
 * the layer's backing file, and nothing depends on `layer` through `child`. The caller makes sure nothing else
 * depends on the layer and that no VM writes to `child` meanwhile. Returns the bytes of data copied.
 */
export async function mergeLayerInto(child: string, layer: string): Promise<number> {
  if (backingInfo(child)?.path !== resolve(layer)) throw new LayerMergeError(`${child} does not rest on ${layer}`);
  const below = backingInfo(layer);
  const tmp = `${child}${MERGE_SUFFIX}`;
  rmSync(tmp, { force: true });
  const view = await openDisk(child, { format: 'qcow2', readOnly: true });
  let copied = 0;
  try {
    const lower = view instanceof Qcow2Image ? view.backing : null;
    if (!(view instanceof Qcow2Image) || !(lower instanceof Qcow2Image))
      throw new LayerMergeError(`${child} and ${layer} must both be qcow2`);
    if (lower.clusterSize !== view.clusterSize) throw new LayerMergeError(`${child} and ${layer} have different cluster sizes`);
    const cs = view.clusterSize;
    await createDisk(tmp, {
      format: 'qcow2',
      size: view.size,
      clusterSize: cs,
      ...(below ? { backingFile: below.path, backingFormat: below.format ?? undefined } : {}),
    });
    const out = await openDisk(tmp, { format: 'qcow2', readOnly: false });
    try {
      const buf = new Uint8Array(cs);
      for (let gc = 0; gc * cs < view.size; gc++) {
        const mapped = (await view.mapping(gc)).kind !== 'unallocated' || (await lower.mapping(gc)).kind !== 'unallocated';
        if (!mapped) continue;
        const at = gc * cs;
        const b = buf.subarray(0, Math.min(cs, view.size - at));
        await view.read(at, b);
        if (isZero(b)) await out.writeZeroes(at, b.length);
        else {
          await out.write(at, b);
          copied += b.length;
        }
      }
      await out.flush();
    } finally {
      await out.close();
    }
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  } finally {
    await view.close();
  }
  chmodSync(tmp, statSync(child).mode & 0o777);
  renameSync(tmp, child);
  fsyncDir(dirname(child));
  return copied;
}
