/**
 * qcow2 interop with QEMU, the reference: images we write pass `qemu-img check` and compare equal to a raw
 * image with the same data; images qemu-img writes (backing files, compression, zero clusters, other
 * cluster sizes) read back exactly as `qemu-img convert -O raw` sees them.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDisk, openDisk, Qcow2Image } from '../../src/storage/index.js';
import { applyOp, fillRandom, qemu, randomOps, rng, tempDir } from './helpers.js';

const { dir, cleanup } = tempDir('qcow2');
after(cleanup);
const MiB = 2 ** 20;

async function readAll(path: string): Promise<Uint8Array> {
  const disk = await openDisk(path, { readOnly: true });
  try {
    const buf = new Uint8Array(disk.size);
    await disk.read(0, buf);
    return buf;
  } finally {
    await disk.close();
  }
}

function qemuRaw(path: string): Uint8Array {
  const out = join(dir, `qemu-view-${Math.random().toString(36).slice(2)}.raw`);
  const r = qemu('qemu-img', 'convert', '-O', 'raw', path, out);
  assert.equal(r.status, 0, r.out);
  return readFileSync(out);
}

function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function assertQemuClean(path: string): void {
  const r = qemu('qemu-img', 'check', path);
  assert.equal(r.status, 0, `qemu-img check ${path}:\n${r.out}`);
  assert.match(r.out, /No errors were found/);
}

for (const [name, clusterSize, withBacking] of [
  ['64K clusters', 65536, false],
  ['512-byte clusters (refcount table growth)', 512, false],
  ['4K clusters with a backing file', 4096, true],
  ['64K clusters with a backing file', 65536, true],
] as const) {
  test(`random writes/discards/write-zeroes pass qemu-img check and compare: ${name}`, { timeout: 120_000 }, async () => {
    const size = 8 * MiB;
    const path = join(dir, `rand-${clusterSize}-${withBacking}.qcow2`);
    const model = new Uint8Array(size);
    let baseHash = '';
    const basePath = join(dir, `base-${clusterSize}.qcow2`);
    if (withBacking) {
      await createDisk(basePath, { format: 'qcow2', size });
      const base = await openDisk(basePath);
      const rand = rng(7);
      for (let i = 0; i < 40; i++) {
        const off = Math.floor(rand() * (size - 100_000));
        const data = fillRandom(new Uint8Array(1 + Math.floor(rand() * 100_000)), rand);
        await base.write(off, data);
        model.set(data, off);
      }
      await base.close();
      baseHash = sha(basePath);
      await createDisk(path, { format: 'qcow2', backingFile: `base-${clusterSize}.qcow2`, clusterSize });
    } else {
      await createDisk(path, { format: 'qcow2', size, clusterSize });
    }
    const disk = await openDisk(path);
    const rand = rng(clusterSize + (withBacking ? 1 : 0));
    // Filling an 8 MiB disk of 512-byte clusters needs more clusters than the initial refcount table covers.
    if (clusterSize === 512) await applyOp(disk, model, { op: 'write', offset: 0, length: size, seed: 1 });
    for (const o of randomOps(rand, 400, size, clusterSize)) await applyOp(disk, model, o);
    const back = new Uint8Array(size);
    await disk.read(0, back);
    assert.ok(Buffer.from(back).equals(model), 'reads match the model');
    if (clusterSize === 512) assert.ok((disk as Qcow2Image).header.refcountTableClusters > 1, 'refcount table grew');
    await disk.close();

    assertQemuClean(path);
    const ref = join(dir, `ref-${clusterSize}-${withBacking}.raw`);
    writeFileSync(ref, model);
    const cmp = qemu('qemu-img', 'compare', path, ref);
    assert.equal(cmp.status, 0, cmp.out);
    assert.ok(Buffer.from(qemuRaw(path)).equals(model), 'qemu-img convert -O raw equals our reads');
    if (withBacking) assert.equal(sha(basePath), baseHash, 'the base image is byte-for-byte unchanged');
  });
}

// Refcount entries of every width are read and written bit by bit or byte by byte (not through a DataView):
// qemu-img must agree with every count we write, whatever the width.
for (const refcountBits of [1, 2, 4, 8, 32, 64]) {
  test(`random writes/discards keep qemu-img check clean with ${refcountBits}-bit refcounts`, { timeout: 60_000 }, async () => {
    const size = 2 * MiB;
    const path = join(dir, `rc-${refcountBits}.qcow2`);
    await createDisk(path, { format: 'qcow2', size, clusterSize: 4096, refcountBits });
    const model = new Uint8Array(size);
    const disk = await openDisk(path);
    for (const o of randomOps(rng(refcountBits), 150, size, 4096)) await applyOp(disk, model, o);
    await disk.close();
    assertQemuClean(path);
    assert.ok(Buffer.from(qemuRaw(path)).equals(model), 'qemu-img convert -O raw equals the model');
  });
}

test(
  'images from qemu-img read correctly: cluster sizes, compression, zero clusters, backing chain',
  { timeout: 120_000 },
  async () => {
    const size = 4 * MiB;
    const rawSrc = join(dir, 'src.raw');
    const src = new Uint8Array(size);
    const rand = rng(99);
    // A mix of random (incompressible), repetitive (compressible) and zero regions.
    for (let off = 0; off < size; off += 65536) {
      const kind = Math.floor(rand() * 3);
      if (kind === 0) fillRandom(src.subarray(off, off + 65536), rand);
      else if (kind === 1) src.fill(((off >> 16) & 0xff) | 1, off, off + 40000);
    }
    writeFileSync(rawSrc, src);
    for (const cs of ['512', '4096', '65536', '2M']) {
      const p = join(dir, `q-${cs}.qcow2`);
      assert.equal(qemu('qemu-img', 'convert', '-O', 'qcow2', '-o', `cluster_size=${cs}`, rawSrc, p).status, 0);
      assert.ok(Buffer.from(await readAll(p)).equals(src), `cluster_size=${cs}`);
    }
    for (const bits of ['1', '8', '64']) {
      const p = join(dir, `q-rc${bits}.qcow2`);
      assert.equal(qemu('qemu-img', 'convert', '-O', 'qcow2', '-o', `refcount_bits=${bits}`, rawSrc, p).status, 0);
      assert.ok(Buffer.from(await readAll(p)).equals(src), `refcount_bits=${bits}`);
    }
    const compressed = join(dir, 'compressed.qcow2');
    assert.equal(qemu('qemu-img', 'convert', '-c', '-O', 'qcow2', rawSrc, compressed).status, 0);
    const c = (await openDisk(compressed, { readOnly: true })) as Qcow2Image;
    let compressedClusters = 0;
    for (let gc = 0; gc < size / 65536; gc++) if ((await c.mapping(gc)).kind === 'compressed') compressedClusters++;
    await c.close();
    assert.ok(compressedClusters > 10, `image has compressed clusters (${compressedClusters})`);
    assert.ok(Buffer.from(await readAll(compressed)).equals(src), 'compressed image');
    // A compressed descriptor splits its 62 bits between offset and sector count by cluster_bits: the extremes.
    for (const cs of ['512', '2M']) {
      const p = join(dir, `c-${cs}.qcow2`);
      assert.equal(qemu('qemu-img', 'convert', '-c', '-O', 'qcow2', '-o', `cluster_size=${cs}`, rawSrc, p).status, 0);
      assert.ok(Buffer.from(await readAll(p)).equals(src), `compressed, cluster_size=${cs}`);
    }

    // Zero clusters over a backing file: qemu-io write -z on an overlay.
    const overlay = join(dir, 'zero-overlay.qcow2');
    assert.equal(qemu('qemu-img', 'create', '-f', 'qcow2', '-b', 'compressed.qcow2', '-F', 'qcow2', overlay).status, 0);
    const io = qemu('qemu-io', '-c', 'write -z 0 1M', '-c', 'write -P 0x5a 1536k 100k', '-c', 'write -z -u 2M 512k', overlay);
    assert.equal(io.status, 0, io.out);
    const o = (await openDisk(overlay, { readOnly: true })) as Qcow2Image;
    assert.equal((await o.mapping(0)).kind, 'zero');
    await o.close();
    const expected = qemuRaw(overlay);
    assert.ok(Buffer.from(await readAll(overlay)).equals(expected), 'overlay with zero clusters reads like qemu');
    assert.ok(expected.subarray(0, MiB).every((b) => b === 0));
  },
);

test('writing into a qemu-made compressed image and its overlay keeps qemu-img check clean', { timeout: 60_000 }, async () => {
  const size = 2 * MiB;
  const rawSrc = join(dir, 'src2.raw');
  const src = new Uint8Array(size);
  for (let i = 0; i < size; i++) src[i] = (i * 7) >> 9;
  writeFileSync(rawSrc, src);
  const p = join(dir, 'cw.qcow2');
  assert.equal(qemu('qemu-img', 'convert', '-c', '-O', 'qcow2', rawSrc, p).status, 0);
  const disk = await openDisk(p);
  const model = src.slice();
  for (const o of randomOps(rng(5), 150, size, 65536)) await applyOp(disk, model, o);
  await disk.close();
  assertQemuClean(p);
  assert.ok(Buffer.from(qemuRaw(p)).equals(model));
});

test(
  'thin provisioning: empty 10 GiB qcow2 < 1 MiB on the host, ~100 MiB after writing 100 MiB',
  { timeout: 120_000 },
  async () => {
    const p = join(dir, 'thin.qcow2');
    await createDisk(p, { format: 'qcow2', size: 10 * 2 ** 30 });
    assert.ok(statSync(p).blocks * 512 < MiB, `new image uses ${statSync(p).blocks * 512} bytes`);
    const disk = await openDisk(p);
    const chunk = fillRandom(new Uint8Array(4 * MiB), rng(3));
    for (let i = 0; i < 25; i++) await disk.write(i * 400 * MiB, chunk); // spread across the disk
    await disk.flush();
    const used = await disk.allocatedBytes();
    await disk.close();
    assert.ok(used >= 100 * MiB && used < 104 * MiB, `after 100 MiB of writes the image uses ${used / MiB} MiB`);
    assertQemuClean(p);
  },
);

test('raw images are sparse; discard keeps holes where nothing was written', async () => {
  const p = join(dir, 'sparse.raw');
  await createDisk(p, { format: 'raw', size: 10 * 2 ** 30 });
  const disk = await openDisk(p);
  assert.equal(disk.format, 'raw');
  assert.ok((await disk.allocatedBytes()) < MiB);
  const data = fillRandom(new Uint8Array(MiB), rng(1));
  await disk.write(5 * 2 ** 30, data);
  await disk.discard(0, 4 * MiB); // never written: stays a hole
  const back = new Uint8Array(MiB);
  await disk.read(5 * 2 ** 30, back);
  assert.deepEqual(back, data);
  await disk.writeZeroes(5 * 2 ** 30 + 4096, 4096);
  await disk.read(5 * 2 ** 30, back);
  assert.ok(back.subarray(4096, 8192).every((b) => b === 0));
  assert.ok((await disk.allocatedBytes()) < 3 * MiB);
  await assert.rejects(disk.read(10 * 2 ** 30 - 10, new Uint8Array(20)), {
    name: 'StorageError',
    code: 'OUT_OF_RANGE',
  } as object);
  await disk.close();
  // Caller said raw: never probed as qcow2, even if the guest wrote a qcow2 header into it.
  const q = join(dir, 'looks-like-qcow2.raw');
  await createDisk(join(dir, 'hdr.qcow2'), { format: 'qcow2', size: MiB });
  writeFileSync(q, readFileSync(join(dir, 'hdr.qcow2')));
  const asRaw = await openDisk(q, { format: 'raw', readOnly: true });
  assert.equal(asRaw.format, 'raw');
  await asRaw.close();
});

test('lazy refcounts: dirty bit set while writing, cleared on clean close', async () => {
  const p = join(dir, 'lazy.qcow2');
  await createDisk(p, { format: 'qcow2', size: 4 * MiB, lazyRefcounts: true });
  const disk = (await openDisk(p)) as Qcow2Image;
  await disk.write(0, new Uint8Array(70000).fill(1));
  assert.equal(disk.dirty, true);
  const hdr = readFileSync(p).subarray(72, 80);
  assert.equal(hdr[7]! & 1, 1, 'dirty bit is on disk');
  await disk.close();
  assert.equal(readFileSync(p)[79]! & 1, 0, 'dirty bit cleared on close');
  assertQemuClean(p);
});

test('backing chains: loops and forbidden backing files are refused', async () => {
  const a = join(dir, 'loop-a.qcow2');
  const b = join(dir, 'loop-b.qcow2');
  await createDisk(join(dir, 'tmp-base.raw'), { format: 'raw', size: MiB });
  await createDisk(a, { format: 'qcow2', backingFile: 'tmp-base.raw', backingFormat: 'raw' });
  await createDisk(b, { format: 'qcow2', backingFile: 'loop-a.qcow2', backingFormat: 'qcow2' });
  // Point a's backing at b: a -> b -> a.
  assert.equal(qemu('qemu-img', 'rebase', '-u', '-f', 'qcow2', '-b', 'loop-b.qcow2', '-F', 'qcow2', a).status, 0);
  await assert.rejects(openDisk(a, { readOnly: true }), /backing chain loops/);
  await assert.rejects(openDisk(b, { readOnly: true, backingFiles: 'forbid' }), /backing files are forbidden/);
  await assert.rejects(openDisk(b, { readOnly: true, backingDirs: ['/nonexistent-dir'] }), /outside the allowed directories/);
  const c = join(dir, 'confined.qcow2');
  await createDisk(c, { format: 'qcow2', backingFile: 'tmp-base.raw', backingFormat: 'raw' });
  const inside = await openDisk(c, { readOnly: true, backingDirs: [dir] });
  await inside.close();
  await assert.rejects(openDisk(c, { readOnly: true, backingDirs: [join(dir, 'sub')] }), /outside the allowed directories/);
  // A chain deeper than allowed is refused.
  await assert.rejects(openDisk(c, { readOnly: true, maxBackingDepth: 0 }), /deeper than 0/);
});

test(
  'qcow2 version 2 (compat=0.10) images from qemu-img: random writes keep qemu-img check clean',
  { timeout: 60_000 },
  async () => {
    const size = 4 * MiB;
    const base = join(dir, 'v2-base.qcow2');
    const p = join(dir, 'v2.qcow2');
    assert.equal(qemu('qemu-img', 'create', '-f', 'qcow2', '-o', 'compat=0.10', base, '4M').status, 0);
    assert.equal(qemu('qemu-io', '-c', 'write -P 0x33 0 3M', base).status, 0);
    assert.equal(
      qemu('qemu-img', 'create', '-f', 'qcow2', '-o', 'compat=0.10', '-b', 'v2-base.qcow2', '-F', 'qcow2', p).status,
      0,
    );
    const model = new Uint8Array(size).fill(0x33, 0, 3 * MiB);
    const disk = (await openDisk(p)) as Qcow2Image;
    assert.equal(disk.header.version, 2);
    for (const o of randomOps(rng(77), 200, size, 65536)) await applyOp(disk, model, o);
    await disk.close();
    assertQemuClean(p);
    assert.ok(Buffer.from(qemuRaw(p)).equals(model));
  },
);
