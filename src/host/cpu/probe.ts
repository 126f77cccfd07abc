/** Chooses the CPU enforcement mechanism: the best the host offers, or the one asked for (tests, operators). */
import { CgroupV1Enforcer } from './cgroup-v1.js';
import { CgroupV2Enforcer } from './cgroup-v2.js';
import { FallbackEnforcer } from './fallback.js';
import { CPU_MECHANISMS, type CpuEnforcer, type CpuMechanism } from './enforcer.js';

export type MechanismChoice = 'auto' | CpuMechanism;
export const MECHANISM_CHOICES: readonly MechanismChoice[] = ['auto', ...CPU_MECHANISMS];

export class MechanismUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MechanismUnavailableError';
  }
}

export interface ProbeResult {
  enforcer: CpuEnforcer;
  /** Why each better mechanism was passed over. */
  skipped: string[];
}

export function probeCpuEnforcer(choice: MechanismChoice = 'auto'): ProbeResult {
  const skipped: string[] = [];
  if (choice === 'fallback') return { enforcer: new FallbackEnforcer('chosen with --cpu-mechanism fallback'), skipped };
  if (process.platform !== 'linux') return { enforcer: new FallbackEnforcer(`not Linux (${process.platform})`), skipped };
  if (choice === 'auto' || choice === 'cgroup-v2') {
    const v2 = CgroupV2Enforcer.probe();
    if (typeof v2 !== 'string') return { enforcer: v2, skipped };
    if (choice === 'cgroup-v2') throw new MechanismUnavailableError(v2);
    skipped.push(`cgroup-v2: ${v2}`);
  }
  const v1 = CgroupV1Enforcer.probe();
  if (typeof v1 !== 'string') return { enforcer: v1, skipped };
  if (choice === 'cgroup-v1') throw new MechanismUnavailableError(v1);
  skipped.push(`cgroup-v1: ${v1}`);
  return { enforcer: new FallbackEnforcer(skipped.join('; ')), skipped };
}
