/**
 * Per-VM CPU settings (libvirt <cputune>, Proxmox cpuunits/cpulimit/affinity): a proportional weight, a cap in
 * percent of one host core, the host cores the VM's threads may run on, and a burst policy. They live in the VM
 * record and may change while the VM runs. Everything from a request is checked here, one named error per
 * failure, before anything is applied.
 */
export interface CpuBurst {
  /** The higher cap the VM may use while the host has idle capacity. */
  capPercent: number;
  /** How long one burst may last. */
  seconds: number;
}

export interface CpuSettings {
  /** Proportional share under contention, 1..10000 (default 100), work-conserving. */
  weight: number;
  /** At most this share of one host core for the whole VM (150 = one and a half cores); null = no cap. */
  capPercent: number | null;
  /** Host cores the VM's threads may run on; null = every core. */
  cpuset: number[] | null;
  burst: CpuBurst | null;
}

/** A change to the settings; null clears a setting. cpuset arrives as text ("0-1,3") and is parsed here. */
export interface CpuPatch {
  weight?: number;
  capPercent?: number | null;
  cpuset?: string | null;
  burst?: CpuBurst | null;
}

export const MIN_CPU_WEIGHT = 1;
export const MAX_CPU_WEIGHT = 10_000;
export const DEFAULT_CPU_WEIGHT = 100;
/** cgroup v1 refuses a CFS quota below 1 ms; with the 100 ms period that is 1 %. */
export const MIN_CPU_CAP = 1;
export const MAX_BURST_SECONDS = 3600;

export function defaultCpuSettings(): CpuSettings {
  return { weight: DEFAULT_CPU_WEIGHT, capPercent: null, cpuset: null, burst: null };
}

export class CpuSettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CpuSettingsError';
  }
}

/** "0", "0-1", "0,2-3" → sorted unique core numbers. */
export function parseCpuList(text: string): number[] {
  const s = text.trim();
  if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(s))
    throw new CpuSettingsError(`cpuset ${JSON.stringify(text)} must be a list of cores like 0, 0-1 or 0,2-3`);
  const cores = new Set<number>();
  for (const part of s.split(',')) {
    const [a, b] = part.split('-').map(Number) as [number, number | undefined];
    const end = b ?? a;
    if (end < a) throw new CpuSettingsError(`cpuset range ${part} runs backwards`);
    if (end > 4095) throw new CpuSettingsError(`cpuset core ${end} is beyond any host`);
    for (let c = a; c <= end; c++) cores.add(c);
  }
  return [...cores].sort((x, y) => x - y);
}

/** [0,1,2,5] → "0-2,5" (the kernel's list format). */
export function formatCpuList(cores: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < cores.length;) {
    let j = i;
    while (j + 1 < cores.length && cores[j + 1] === cores[j]! + 1) j++;
    out.push(i === j ? String(cores[i]) : `${cores[i]}-${cores[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

/** "PCT[:SECONDS]" → a burst (default 30 s). */
export function parseBurst(text: string): CpuBurst {
  const m = /^(\d+(?:\.\d+)?)(?::(\d+(?:\.\d+)?))?$/.exec(text.trim());
  if (!m) throw new CpuSettingsError(`burst ${JSON.stringify(text)} must be PCT[:SECONDS], e.g. 80:30`);
  return { capPercent: Number(m[1]), seconds: m[2] === undefined ? 30 : Number(m[2]) };
}

/**
 * Applies a patch to the current settings and checks the result against the host. Throws CpuSettingsError with
 * the first problem; the current settings are never modified.
 */
export function applyCpuPatch(current: CpuSettings, patch: CpuPatch, hostCores: number): CpuSettings {
  const next: CpuSettings = { ...current };
  if (patch.weight !== undefined) next.weight = patch.weight;
  if (patch.capPercent !== undefined) next.capPercent = patch.capPercent;
  if (patch.burst !== undefined) next.burst = patch.burst;
  if (patch.cpuset !== undefined) {
    if (patch.cpuset === null) next.cpuset = null;
    else {
      if (hostCores < 2) throw new CpuSettingsError('this host has one core: there is nothing to choose with a cpuset');
      next.cpuset = parseCpuList(patch.cpuset);
    }
  }
  checkCpuSettings(next, hostCores);
  return next;
}

export function checkCpuSettings(s: CpuSettings, hostCores: number): void {
  if (!Number.isInteger(s.weight) || s.weight < MIN_CPU_WEIGHT || s.weight > MAX_CPU_WEIGHT)
    throw new CpuSettingsError(`cpu weight must be a whole number from ${MIN_CPU_WEIGHT} to ${MAX_CPU_WEIGHT}, got ${s.weight}`);
  const maxCap = 100 * hostCores;
  const checkCap = (what: string, v: number): void => {
    if (!Number.isFinite(v) || v < MIN_CPU_CAP || v > maxCap)
      throw new CpuSettingsError(
        `${what} must be from ${MIN_CPU_CAP} to ${maxCap} percent of one core (this host has ${hostCores} cores), got ${v}`,
      );
  };
  if (s.capPercent !== null) checkCap('cpu cap', s.capPercent);
  if (s.cpuset !== null) {
    if (s.cpuset.length === 0) throw new CpuSettingsError('cpuset names no core');
    const bad = s.cpuset.find((c) => c >= hostCores);
    if (bad !== undefined)
      throw new CpuSettingsError(`cpuset core ${bad} does not exist: this host has cores 0-${hostCores - 1}`);
  }
  if (s.burst !== null) {
    if (s.capPercent === null) throw new CpuSettingsError('a cpu burst raises a cap: set --cpu-cap first');
    checkCap('cpu burst cap', s.burst.capPercent);
    if (s.burst.capPercent <= s.capPercent)
      throw new CpuSettingsError(`the burst cap (${s.burst.capPercent}) must be above the cap (${s.capPercent})`);
    if (!Number.isFinite(s.burst.seconds) || s.burst.seconds <= 0 || s.burst.seconds > MAX_BURST_SECONDS)
      throw new CpuSettingsError(`burst seconds must be above 0 and at most ${MAX_BURST_SECONDS}`);
  }
}

/** Reads settings from an untrusted record field; anything malformed falls back to the defaults. */
export function cpuSettingsFromRecord(v: unknown, hostCores: number): CpuSettings {
  if (typeof v !== 'object' || v === null) return defaultCpuSettings();
  const r = v as Partial<CpuSettings>;
  const s: CpuSettings = {
    weight: typeof r.weight === 'number' ? r.weight : DEFAULT_CPU_WEIGHT,
    capPercent: typeof r.capPercent === 'number' ? r.capPercent : null,
    cpuset: Array.isArray(r.cpuset) && r.cpuset.every((c) => Number.isInteger(c) && c >= 0) ? [...r.cpuset] : null,
    burst:
      r.burst && typeof r.burst.capPercent === 'number' && typeof r.burst.seconds === 'number'
        ? { capPercent: r.burst.capPercent, seconds: r.burst.seconds }
        : null,
  };
  try {
    checkCpuSettings(s, hostCores);
    return s;
  } catch {
    // A cpuset naming a core this host lacks (the record moved hosts) must not keep the VM from starting.
    return { ...s, cpuset: null, ...(safe(s, hostCores) ? {} : defaultCpuSettings()) };
  }
}

function safe(s: CpuSettings, hostCores: number): boolean {
  try {
    checkCpuSettings({ ...s, cpuset: null }, hostCores);
    return true;
  } catch {
    return false;
  }
}
