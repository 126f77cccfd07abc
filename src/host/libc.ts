/**
 * C library functions Node does not offer (prctl, sched_setaffinity, mallopt, madvise, dup2), through koffi: one
 * place loads koffi and libc.so.6, and each caller names the function by its C signature.
 */
import { createRequire } from 'node:module';

interface Library {
  func(signature: string): unknown;
}

let libc: Library | null | undefined;
const functions = new Map<string, unknown>();

/**
 * The libc function with this C signature (cached), or null where it cannot be had: koffi missing, a C library
 * that is not glibc's libc.so.6, or no such function.
 */
export function libcFunction<F>(signature: string): F | null {
  if (functions.has(signature)) return functions.get(signature) as F | null;
  if (libc === undefined) {
    try {
      const require = createRequire(import.meta.url);
      libc = (require('koffi') as { load(name: string): Library }).load('libc.so.6');
    } catch {
      libc = null;
    }
  }
  let fn: unknown;
  try {
    fn = libc?.func(signature) ?? null;
  } catch {
    fn = null;
  }
  functions.set(signature, fn);
  return fn as F | null;
}
