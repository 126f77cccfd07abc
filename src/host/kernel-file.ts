/** Reads the head of a kernel file and classifies it (src/machine/loaders/kernel-format.ts) before anything boots. */
import { open } from 'node:fs/promises';
import { HostError } from './errors.js';
import {
  classifyKernel,
  KERNEL_HEAD_BYTES,
  KernelFormatError,
  type KernelFormatChoice,
  type KernelKind,
} from '../machine/loaders/kernel-format.js';

/** The first KERNEL_HEAD_BYTES of a file (fewer if it is shorter). Throws the fs error when it cannot be read. */
export async function readHead(path: string, bytes = KERNEL_HEAD_BYTES): Promise<Uint8Array> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Classifies the kernel at `path`; throws KernelFormatError for a file that is no kernel we can boot. */
export async function checkKernelFile(path: string, choice: KernelFormatChoice): Promise<KernelKind> {
  return classifyKernel(await readHead(path), choice, `kernel ${path}`);
}

/** The daemon's create check: a file that is no bootable kernel is refused (400 INVALID_CONFIG) before it is used. */
export async function refuseNonKernel(path: string, choice: KernelFormatChoice): Promise<void> {
  try {
    await checkKernelFile(path, choice);
  } catch (err) {
    if (err instanceof KernelFormatError) throw new HostError('INVALID_CONFIG', err.message);
    throw new HostError('INVALID_PATH', `cannot read kernel ${path}: ${(err as Error).message}`);
  }
}
