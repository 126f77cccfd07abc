import { StorageError } from './backend.js';

const SUFFIX: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

/** Parses a qemu-img style size: bytes, or a number with a binary suffix (k, M, G, T, P; case-insensitive). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgtp]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new StorageError('UNSUPPORTED', `invalid size '${text}' (expected e.g. 10G, 512M, 4096)`);
  const value = Number(m[1]) * SUFFIX[m[2]!.toLowerCase()]!;
  if (!Number.isFinite(value) || value > Number.MAX_SAFE_INTEGER) {
    throw new StorageError('UNSUPPORTED', `size '${text}' is too large`);
  }
  return Math.ceil(value);
}

/** Formats bytes the way qemu-img info does ("10 GiB", "196 KiB"). */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const text = i === 0 ? String(v) : Number.isInteger(v) ? String(v) : v.toFixed(3).replace(/\.?0+$/, '');
  return `${text} ${units[i]}`;
}
