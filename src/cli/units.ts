/**
 * The CLI's words for sizes and counts, shared by `run` and `create` so the same flag means the same thing
 * everywhere: sizes take a unit (512M, 1G, 1GiB, 1048576K) and a plain number is MiB; limits are stated in the
 * flag's own words ("--memory must be at most 16 GiB"), not the API's field names.
 */
import { MAX_CPUS, MAX_MEMORY_MIB, MIN_MEMORY_MIB } from '../vm/config.js';

/** A flag value the user must fix (exit 2, usage). */
export class FlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlagError';
  }
}

const UNIT_MIB: Record<string, number> = { K: 1 / 1024, M: 1, G: 1024, T: 1024 * 1024 };

/** "512" (MiB), "512M", "512MiB", "1G", "1GiB", "1048576K", "1T" → MiB (a whole number). */
export function parseSizeMiB(flag: string, text: string): number {
  const m = /^(\d+)\s*(?:([KMGT])(?:i?B)?)?$/i.exec(text.trim());
  if (!m) throw new FlagError(`${flag}: cannot parse '${text}' (examples: 512, 512M, 1G)`);
  const mib = Number(m[1]) * UNIT_MIB[(m[2] ?? 'M').toUpperCase()]!;
  if (!Number.isInteger(mib)) throw new FlagError(`${flag}: ${text} is not a whole number of MiB`);
  return mib;
}

/** "16 GiB", "512 MiB": how the CLI speaks of sizes. */
export function formatMiB(mib: number): string {
  return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

/** --memory: a size within the VM limits. */
export function parseMemoryFlag(text: string, flag = '--memory'): number {
  const mib = parseSizeMiB(flag, text);
  if (mib < MIN_MEMORY_MIB) throw new FlagError(`${flag} must be at least ${formatMiB(MIN_MEMORY_MIB)}, got ${text}`);
  if (mib > MAX_MEMORY_MIB) throw new FlagError(`${flag} must be at most ${formatMiB(MAX_MEMORY_MIB)}, got ${text}`);
  return mib;
}

/** --cpus / --vcpus: a whole number from 1 to MAX_CPUS. */
export function parseCpusFlag(text: string, flag = '--cpus'): number {
  if (!/^\d+$/.test(text.trim())) throw new FlagError(`${flag} takes a whole number of vCPUs, got '${text}'`);
  const n = Number(text);
  if (n < 1 || n > MAX_CPUS) throw new FlagError(`${flag} must be from 1 to ${MAX_CPUS}, got ${text}`);
  return n;
}

/** The one value of two alias flags (--cpus/--vcpus); both given with different values is a usage error. */
export function aliasValue(
  values: Record<string, unknown>,
  names: readonly string[],
): { flag: string; text: string } | undefined {
  const given = names.filter((n) => typeof values[n] === 'string').map((n) => ({ flag: `--${n}`, text: values[n] as string }));
  if (given.length > 1 && given.some((g) => g.text !== given[0]!.text)) {
    throw new FlagError(`${given.map((g) => g.flag).join(' and ')} are the same option; give one`);
  }
  return given[0];
}

/** API field names in daemon messages, in the CLI's words. */
const FIELD_FLAGS: [RegExp, string][] = [
  [/\bmemoryMiB\b/g, '--memory'],
  [/\bvcpus\b/g, '--vcpus'],
  [/\bcmdline\b/g, '--cmdline'],
  [/\bkernelFormat\b/g, '--kernel-format'],
  [/\bdisks\.(\d+)\.sizeMiB\b/g, '--disk $1'],
  [/\bballoonTargetMiB\b/g, 'the balloon target'],
  [/\btimeoutSeconds\b/g, '--timeout'],
];

/** Rewrites a daemon message that names API fields ("memoryMiB: Too big: expected number to be <=16384"). */
export function inCliWords(message: string): string {
  const tooBig = /^(memoryMiB|vcpus): Too big: expected number to be <=(\d+)$/.exec(message);
  if (tooBig) {
    const max = Number(tooBig[2]);
    return tooBig[1] === 'memoryMiB' ? `--memory must be at most ${formatMiB(max)}` : `--vcpus must be at most ${max}`;
  }
  const tooSmall = /^(memoryMiB|vcpus): Too small: expected number to be >=(\d+)$/.exec(message);
  if (tooSmall) {
    const min = Number(tooSmall[2]);
    return tooSmall[1] === 'memoryMiB' ? `--memory must be at least ${formatMiB(min)}` : `--vcpus must be at least ${min}`;
  }
  return FIELD_FLAGS.reduce((m, [re, flag]) => m.replace(re, flag), message);
}
