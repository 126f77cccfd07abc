/**
 * The host's CPU allocator: it holds every VM's settings in force, places each running VM's threads with the
 * chosen mechanism (enforcer.ts), applies changes live, and runs the burst policy on each monitoring tick.
 * Settings are checked against both the host and the mechanism before anything changes.
 */
import { cpus } from 'node:os';
import type { EngineVm } from '../engine.js';
import type { EventBus } from '../events.js';
import { BurstState } from './burst.js';
import { CpuEnforceError, type CpuEnforcer, type EffectiveCpu, type VmCpuPlacement } from './enforcer.js';
import { formatCpuList, type CpuSettings } from './settings.js';

interface Placed {
  vm: EngineVm;
  placement: VmCpuPlacement;
  settings: CpuSettings;
  burst: BurstState;
  /** What the run loop enforces itself (fallback mechanism), to avoid resending the same cap. */
  runLoopCap: number | null | undefined;
  /** The thread moves reported so far, in order. */
  threadsPlaced: Promise<void>;
}

/** Idle capacity over the last policy step on some cores: the sum of their idle shares, and how many. */
export interface IdleCapacity {
  idleCores: number;
  cores: number;
}

/** What the API shows of a VM's CPU allocation. */
export interface CpuView extends CpuSettings {
  mechanism: string;
  /** The cap in force now (the burst cap while bursting). */
  effectiveCapPercent: number | null;
  bursting: boolean;
  /** Linux thread ids of the daemon process that run the VM's guest code. */
  threads: number[];
  /** CPU time per host core since start (ns), where the mechanism measures it. */
  perCoreNs: number[] | null;
}

export class CpuManager {
  readonly hostCores = cpus().length;
  private readonly placed = new Map<string, Placed>();

  constructor(
    readonly enforcer: CpuEnforcer,
    private readonly events: EventBus,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** Throws CpuEnforceError when this host's mechanism cannot enforce the settings. */
  check(s: CpuSettings): void {
    const why = this.enforcer.refuse(effective(s, false));
    if (why) throw new CpuEnforceError(`cannot enforce with ${this.enforcer.mechanism}: ${why}`);
  }

  /** Opens the VM's placement before its threads exist, so they are placed the moment they are reported. */
  attach(name: string, vm: EngineVm, settings: CpuSettings): void {
    this.detach(name);
    const placement = this.enforcer.open(name);
    try {
      placement.apply(effective(settings, false));
    } catch (err) {
      placement.close();
      throw err;
    }
    this.placed.set(name, {
      vm,
      placement,
      settings,
      burst: new BurstState(),
      runLoopCap: undefined,
      threadsPlaced: Promise.resolve(),
    });
  }

  /**
   * Places a VM's threads as they are reported, without holding up the report (a start or restore waits for it):
   * moves in the order reported, and none after the VM's placement is released.
   */
  threadsReported(name: string, vm: EngineVm, tids: number[]): void {
    const p = this.placed.get(name);
    if (!p || p.vm !== vm) return;
    p.threadsPlaced = p.threadsPlaced
      .then(() => (this.placed.get(name) === p ? p.placement.addThreads(tids) : undefined))
      .catch((err: Error) => {
        if (this.placed.get(name) === p) this.log(`${name}: could not place threads ${tids.join(',')}: ${err.message}`);
      });
  }

  /**
   * After the VM runs: its threads placed (which went on beside its start), then the part of the settings its run
   * loop enforces itself.
   */
  async started(name: string): Promise<void> {
    const p = this.placed.get(name);
    if (!p) return;
    await p.threadsPlaced;
    if (this.placed.get(name) === p) await this.enforce(p);
  }

  /** Applies new settings to a running VM (a stopped one just takes them at its next start). */
  async update(name: string, settings: CpuSettings): Promise<void> {
    const p = this.placed.get(name);
    if (!p) return;
    const before = p.settings;
    p.settings = settings;
    if (!settings.burst || settings.capPercent === null) p.burst.reset();
    else p.burst.settingsChanged();
    try {
      await this.enforce(p);
    } catch (err) {
      p.settings = before;
      await this.enforce(p).catch(() => {});
      throw err;
    }
  }

  /** Releases the VM's placement (only that engine VM's, when given: a restart may already own a new one). */
  detach(name: string, vm?: EngineVm): void {
    const p = this.placed.get(name);
    if (!p || (vm && p.vm !== vm)) return;
    this.placed.delete(name);
    p.placement.close();
  }

  closeAll(): void {
    for (const name of [...this.placed.keys()]) this.detach(name);
    this.enforcer.close();
  }

  view(name: string, settings: CpuSettings): CpuView {
    const p = this.placed.get(name);
    const bursting = p?.burst.active ?? false;
    const s = p?.settings ?? settings;
    return {
      ...s,
      mechanism: this.enforcer.mechanism,
      effectiveCapPercent: effective(s, bursting).capPercent,
      bursting,
      threads: p ? p.vm.threadIds() : [],
      perCoreNs: p ? p.placement.perCoreNs() : null,
    };
  }

  /** The thread ids of every placed VM, by name. */
  placedThreads(): Map<string, number[]> {
    return new Map([...this.placed].map(([name, p]) => [name, p.vm.threadIds()]));
  }

  /** One policy step (src/host/cpu/policy-loop.ts calls it every 500 ms). */
  async tick(
    nowMs: number,
    idleOn: (cpuset: readonly number[] | null) => IdleCapacity,
    cpuPercentOf: (name: string) => number | undefined,
  ): Promise<void> {
    for (const [name, p] of this.placed) {
      const cpuPercent = cpuPercentOf(name);
      if (cpuPercent === undefined) continue;
      const { idleCores, cores } = idleOn(p.settings.cpuset);
      if (cores === 0) continue;
      const decision = p.burst.decide({ nowMs, settings: p.settings, cpuPercent, idleCores, cores });
      if (!decision) continue;
      try {
        await this.enforce(p);
      } catch (err) {
        this.log(`${name}: burst policy could not apply: ${(err as Error).message}`);
        p.burst.reset();
        continue;
      }
      const cap = effective(p.settings, p.burst.active).capPercent;
      this.events.emit({
        type: 'policy',
        vm: name,
        policy: 'cpu-burst',
        action: decision.action,
        reason: decision.reason,
        values: { capPercent: cap, cpuPercent, idleCores: Math.round(idleCores * 100) / 100, cores },
      });
    }
  }

  private async enforce(p: Placed): Promise<void> {
    const s = effective(p.settings, p.burst.active);
    const { runLoopCapPercent } = p.placement.apply(s);
    if (runLoopCapPercent !== p.runLoopCap) {
      // The fallback mechanism's cap lives in the VM's run loop; a runtime that cannot pace refuses it.
      if (runLoopCapPercent !== null || p.runLoopCap !== undefined) await p.vm.setRunLoopCap(runLoopCapPercent);
      p.runLoopCap = runLoopCapPercent;
    }
  }
}

/** Releases every placement and the mechanism's own folders (daemon exit). */
export function closeCpuManager(m: CpuManager): void {
  m.closeAll();
}

function effective(s: CpuSettings, bursting: boolean): EffectiveCpu {
  return {
    weight: s.weight,
    capPercent: bursting && s.burst ? s.burst.capPercent : s.capPercent,
    cpuset: s.cpuset,
  };
}

export function describeCpu(s: CpuSettings): string {
  const parts = [`weight ${s.weight}`];
  parts.push(s.capPercent === null ? 'no cap' : `cap ${s.capPercent} %`);
  if (s.cpuset) parts.push(`cpuset ${formatCpuList(s.cpuset)}`);
  if (s.burst) parts.push(`burst ${s.burst.capPercent} % for ${s.burst.seconds} s`);
  return parts.join(', ');
}
