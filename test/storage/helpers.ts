import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockBackend } from '../../src/storage/backend.js';

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `typevisor-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs a qemu tool synchronously; returns its exit status and output. */
export function qemu(tool: 'qemu-img' | 'qemu-io', ...args: string[]): { status: number; out: string } {
  const r = spawnSync(tool, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT')
    throw new Error(`${tool} is required but not installed: apt-get install qemu-utils`);
  return { status: r.status ?? -1, out: (r.stdout ?? '') + (r.stderr ?? '') };
}

import { mulberry32 as rng } from '../helpers/prng.js';
export { rng };

export function fillRandom(buf: Uint8Array, rand: () => number): Uint8Array {
  for (let i = 0; i < buf.length; i += 4) {
    const v = (rand() * 2 ** 32) >>> 0;
    buf[i] = v;
    if (i + 1 < buf.length) buf[i + 1] = v >>> 8;
    if (i + 2 < buf.length) buf[i + 2] = v >>> 16;
    if (i + 3 < buf.length) buf[i + 3] = v >>> 24;
  }
  return buf;
}

export type Op =
  | { op: 'write'; offset: number; length: number; seed: number }
  | { op: 'discard' | 'writeZeroes'; offset: number; length: number }
  | { op: 'flush' };

/** Applies an operation to the disk and to the in-memory model of its contents. */
export async function applyOp(disk: BlockBackend, model: Uint8Array, o: Op): Promise<void> {
  switch (o.op) {
    case 'write': {
      const data = fillRandom(new Uint8Array(o.length), rng(o.seed));
      await disk.write(o.offset, data);
      model.set(data, o.offset);
      return;
    }
    case 'discard':
      await disk.discard(o.offset, o.length);
      model.fill(0, o.offset, o.offset + o.length);
      return;
    case 'writeZeroes':
      await disk.writeZeroes(o.offset, o.length);
      model.fill(0, o.offset, o.offset + o.length);
      return;
    case 'flush':
      await disk.flush();
  }
}

/** Random ops biased towards cluster boundaries, where the interesting cases are. */
export function randomOps(rand: () => number, count: number, size: number, cluster: number): Op[] {
  const ops: Op[] = [];
  const pick = (): number => {
    const base = Math.floor(rand() * (size / cluster)) * cluster;
    const jitter = rand() < 0.5 ? 0 : Math.floor(rand() * cluster);
    return Math.min(size - 1, base + jitter);
  };
  for (let i = 0; i < count; i++) {
    const offset = pick();
    const maxLen = size - offset;
    const r = rand();
    const length = Math.max(
      1,
      Math.min(maxLen, r < 0.3 ? cluster : r < 0.6 ? Math.floor(rand() * cluster * 3) : Math.floor(rand() * 4096)),
    );
    const k = rand();
    if (k < 0.6) ops.push({ op: 'write', offset, length, seed: Math.floor(rand() * 2 ** 31) });
    else if (k < 0.75) ops.push({ op: 'discard', offset, length });
    else if (k < 0.9) ops.push({ op: 'writeZeroes', offset, length });
    else ops.push({ op: 'flush' });
  }
  return ops;
}
