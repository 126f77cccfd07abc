/**
 * Per-VM memory settings (Hyper-V Dynamic Memory's minimum/maximum, libvirt <memtune>, VMware shares): the
 * maximum is the RAM the guest sees (config.memoryMiB); the floor is what the balloon never takes it under
 * (default the maximum: no ballooning); the weight is its share under pressure; a target pins the guest's
 * size (running VMs, not persisted across a stop). Everything from a request is checked here, one named error
 * per failure, before anything changes.
 */
export interface MemorySettings {
  /** The balloon never takes the guest below this; null = the maximum (the VM is never ballooned). */
  minMiB: number | null;
  /** Share of the memory pool under pressure, 1..10000 (default 100). */
  weight: number;
}

/** A change; null clears the floor (back to the maximum). */
export interface MemoryPatch {
  minMiB?: number | null;
  weight?: number;
}

export const MIN_MEMORY_WEIGHT = 1;
export const MAX_MEMORY_WEIGHT = 10_000;
export const DEFAULT_MEMORY_WEIGHT = 100;

export function defaultMemorySettings(): MemorySettings {
  return { minMiB: null, weight: DEFAULT_MEMORY_WEIGHT };
}

export class MemorySettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MemorySettingsError';
  }
}

/** The floor in force: the minimum, or the maximum when none is set. */
export function floorMiB(s: MemorySettings, maxMiB: number): number {
  return s.minMiB ?? maxMiB;
}

export function applyMemoryPatch(current: MemorySettings, patch: MemoryPatch, maxMiB: number): MemorySettings {
  const next: MemorySettings = { ...current };
  if (patch.minMiB !== undefined) next.minMiB = patch.minMiB;
  if (patch.weight !== undefined) next.weight = patch.weight;
  checkMemorySettings(next, maxMiB);
  return next;
}

export function checkMemorySettings(s: MemorySettings, maxMiB: number): void {
  if (!Number.isInteger(s.weight) || s.weight < MIN_MEMORY_WEIGHT || s.weight > MAX_MEMORY_WEIGHT)
    throw new MemorySettingsError(
      `memory weight must be a whole number from ${MIN_MEMORY_WEIGHT} to ${MAX_MEMORY_WEIGHT}, got ${s.weight}`,
    );
  if (s.minMiB !== null) {
    if (!Number.isInteger(s.minMiB) || s.minMiB < 1)
      throw new MemorySettingsError(`the memory minimum must be a whole number of MiB above 0, got ${s.minMiB}`);
    if (s.minMiB > maxMiB)
      throw new MemorySettingsError(`the memory minimum (${s.minMiB} MiB) is above the maximum (${maxMiB} MiB)`);
  }
}

/** A target size for a running guest: within [floor, max]. */
export function checkMemoryTarget(targetMiB: number, s: MemorySettings, maxMiB: number): void {
  const floor = floorMiB(s, maxMiB);
  if (!Number.isInteger(targetMiB) || targetMiB < floor || targetMiB > maxMiB)
    throw new MemorySettingsError(
      `the memory target must be within [${floor}, ${maxMiB}] MiB (the VM's minimum and maximum), got ${targetMiB} MiB`,
    );
}

/** Reads settings from an untrusted record field; anything malformed falls back to the defaults. */
export function memorySettingsFromRecord(v: unknown, maxMiB: number): MemorySettings {
  if (typeof v !== 'object' || v === null) return defaultMemorySettings();
  const r = v as Partial<MemorySettings>;
  const s: MemorySettings = {
    minMiB: typeof r.minMiB === 'number' ? r.minMiB : null,
    weight: typeof r.weight === 'number' ? r.weight : DEFAULT_MEMORY_WEIGHT,
  };
  try {
    checkMemorySettings(s, maxMiB);
    return s;
  } catch {
    return defaultMemorySettings();
  }
}

export class SizeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SizeError';
  }
}

const UNITS: Record<string, number> = { '': 1, k: 1 / 1024, m: 1, g: 1024, t: 1024 * 1024 };

/**
 * "512M", "1G", "1.5GiB", "64" (MiB), "65536K" → MiB (a whole number). Units are binary (K, M, G, T with an
 * optional "i" and "B"); anything else is a SizeError naming the text.
 */
export function parseSizeMiB(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  if (!m || (m[2] === '' && /b\s*$/i.test(text) && !/[kmgt]i?b\s*$/i.test(text)))
    throw new SizeError(`${what} ${JSON.stringify(text)} is not a size: use a number with K, M, G or T (e.g. 512M, 1G)`);
  const mib = Number(m[1]) * UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isFinite(mib) || !Number.isInteger(mib) || mib <= 0)
    throw new SizeError(`${what} ${JSON.stringify(text)} must be a positive whole number of MiB`);
  return mib;
}

export function describeMemory(s: MemorySettings, maxMiB: number): string {
  return `memory ${maxMiB} MiB, min ${floorMiB(s, maxMiB)} MiB, weight ${s.weight}`;
}
