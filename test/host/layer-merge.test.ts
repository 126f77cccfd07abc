/**
 * Merging a disk layer into the image built on it (src/host/layer-merge.ts), on real qcow2 files: base (raw) <-
 * layer <- child, with data, zero clusters and discards at every level. After the merge the child reads exactly as
 * before, rests on the base, and qemu-img check finds it clean; a child not resting on the layer is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backingInfo, LayerMergeError, mergeLayerInto } from '../../src/host/layer-merge.js';
import { createDisk, openDisk } from '../../src/storage/index.js';

const CLUSTER = 64 * 1024;
const SIZE = 64 * CLUSTER + 1000; // a partial last cluster

async function readAll(path: string): Promise<Uint8Array> {
  const d = await openDisk(path, { readOnly: true });
  try {
    const out = new Uint8Array(d.size);
    await d.read(0, out);
    return out;
  } finally {
    await d.close();
  }
}

async function writeTo(path: string, writes: [offset: number, byte: number, length: number][], zeroes: [number, number][]) {
  const d = await openDisk(path, { readOnly: false });
  try {
    for (const [off, byte, len] of writes) await d.write(off, new Uint8Array(len).fill(byte));
    for (const [off, len] of zeroes) await d.writeZeroes(off, len);
    await d.flush();
  } finally {
    await d.close();
  }
}

test('a layer merged into its child: same bytes, child rests on the base, qemu-img check clean', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-merge-'));
  try {
    const base = join(dir, 'base.raw');
    const b = new Uint8Array(SIZE);
    for (let i = 0; i < SIZE; i++) b[i] = (i * 7) & 0xff;
    writeFileSync(base, b);
    const layer = join(dir, 'layer.qcow2');
    const child = join(dir, 'child.qcow2');
    await createDisk(layer, { format: 'qcow2', backingFile: base, backingFormat: 'raw' });
    // The layer: data over the base, whole clusters zeroed, a partial write, the last partial cluster.
    await writeTo(
      layer,
      [
        [2 * CLUSTER, 0xaa, CLUSTER],
        [5 * CLUSTER + 100, 0xbb, 300],
        [64 * CLUSTER, 0xcc, 1000],
      ],
      [[8 * CLUSTER, 2 * CLUSTER]],
    );
    await createDisk(child, { format: 'qcow2', backingFile: layer, backingFormat: 'qcow2' });
    // The child: overwrites part of the layer's data, zeroes a cluster the layer wrote, writes where only the base has data.
    await writeTo(
      child,
      [
        [2 * CLUSTER + 10, 0x11, 20],
        [20 * CLUSTER, 0x22, CLUSTER],
      ],
      [[5 * CLUSTER, CLUSTER]],
    );
    const before = await readAll(child);
    const copied = await mergeLayerInto(child, layer);
    assert.ok(copied >= 2 * CLUSTER + 1000 && copied < 4 * CLUSTER, `copied ${copied} bytes`);
    assert.deepEqual(backingInfo(child), { path: base, format: 'raw' });
    assert.deepEqual(await readAll(child), before);
    const check = execFileSync('qemu-img', ['check', child], { encoding: 'utf8' });
    assert.match(check, /No errors were found/);
    // Only the clusters the layer or the child mapped were written: the rest still comes from the base.
    assert.ok(statSync(child).size < 20 * CLUSTER, `child is ${statSync(child).size} bytes`);
    // The layer is no longer needed: the child reads the same without it.
    rmSync(layer);
    assert.deepEqual(await readAll(child), before);
    await assert.rejects(mergeLayerInto(child, layer), LayerMergeError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
