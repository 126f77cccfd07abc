/**
 * The host's memory manager: it knows every running VM's maximum, floor, weight and balloon, runs the policy
 * (policy.ts) on each monitoring sample, drives the balloons, and reports each move as a `policy` event with
 * its reason. It also answers what `typevisor host` shows of the budget.
 */
import type { EngineVm, VmStats } from '../engine.js';
import type { EventBus } from '../events.js';
import type { VmSample } from '../monitor/samples.js';
import type { VmConfig } from '../../vm/config.js';
import type { MemoryBudget, AdmittedVm } from './budget.js';
import { decide, wantOf, type PolicyVm } from './policy.js';
import { floorMiB, type MemorySettings } from './settings.js';

const MIB = 1024 * 1024;
/** The policy keeps the VMs' sizes within this share of the budget (the rest covers per-VM overhead). */
export const POLICY_TARGET_FRACTION = 0.85;

interface Managed {
  maxMiB: number;
  settings: MemorySettings;
  balloon: boolean;
  /** The size the balloon target gives the guest now (maximum − target). */
  sizeMiB: number;
  pinnedMiB: number | null;
  lastMajorFaults: number | null;
  lastT: number;
  lastWantMiB: number | null;
}

export interface MemoryView {
  maxMiB: number;
  /** The floor in force (the maximum when no minimum is set). */
  minMiB: number;
  weight: number;
  /** A size pinned with --memory-target (running VMs only), or null. */
  targetMiB: number | null;
  /** What the balloon target gives the guest now; null when the VM is not running. */
  sizeMiB: number | null;
}

export interface VmMemoryFigures {
  name: string;
  stats: VmStats;
}

export interface HostMemoryView {
  budgetBytes: number;
  overcommit: number;
  /** budget × overcommit: what the running VMs' maximums may add up to. */
  commitLimitBytes: number;
  /** The running VMs' maximums. */
  committedBytes: number;
  /** The running VMs' floors (must fit the budget). */
  floorsBytes: number;
  /** What the VMs hold on the host now (guest RAM chunks). */
  residentBytes: number;
  /** Budget − resident. */
  headroomBytes: number;
  /** The policy keeps the VMs' sizes within this. */
  policyTargetBytes: number;
  /**
   * The daemon's RSS beyond its RSS with no VM running and beyond the guests' RAM, per running VM: what a VM
   * costs besides its RAM, measured (worker isolate and thread included); null with no VM running.
   */
  measuredOverheadPerVmBytes: number | null;
  vms: {
    name: string;
    maxBytes: number;
    floorBytes: number;
    sizeBytes: number | null;
    residentBytes: number;
    guestRamBytes: number;
    /** Decode caches + worker heap: what the VM costs beyond its guest RAM. */
    overheadBytes: number;
  }[];
}

export class MemoryManager {
  private readonly managed = new Map<string, Managed>();

  constructor(
    readonly budget: MemoryBudget,
    private readonly events: EventBus,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** The VMs' measured overhead (decode caches, worker heaps) at the last step: it comes out of the pool. */
  private overheadMiB = 0;

  /** What the guests' sizes may add up to: the target share of the budget less the VMs' own overhead. */
  get poolMiB(): number {
    return Math.max(0, Math.floor(this.budget.budgetMiB * POLICY_TARGET_FRACTION - this.overheadMiB));
  }

  attach(name: string, config: VmConfig, settings: MemorySettings): void {
    this.managed.set(name, {
      maxMiB: config.memoryMiB,
      settings,
      balloon: config.balloon,
      sizeMiB: config.memoryMiB,
      pinnedMiB: null,
      lastMajorFaults: null,
      lastT: 0,
      lastWantMiB: null,
    });
  }

  detach(name: string): void {
    this.managed.delete(name);
  }

  update(name: string, settings: MemorySettings, maxMiB: number): void {
    const m = this.managed.get(name);
    if (m) {
      m.settings = settings;
      m.maxMiB = maxMiB;
    }
  }

  /**
   * Balloon moves, one at a time: a policy step that decided before a pin must not land after it (its move and
   * its size would undo the pin's).
   */
  private moves: Promise<unknown> = Promise.resolve();
  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.moves.then(fn, fn);
    this.moves = run.catch(() => {});
    return run;
  }

  /** Pins a running VM's size (null hands it back to the policy). The caller has checked the range. */
  async setTarget(name: string, vm: EngineVm, targetMiB: number | null, maxMiB: number): Promise<void> {
    const m = this.managed.get(name);
    if (!m) return;
    m.pinnedMiB = targetMiB;
    if (targetMiB === null) return;
    await this.serially(async () => {
      if (m.pinnedMiB !== targetMiB) return; // pinned again meanwhile: that call moves it
      await vm.setBalloonTarget((maxMiB - targetMiB) * MIB);
      m.sizeMiB = targetMiB;
    });
  }

  view(name: string, settings: MemorySettings, maxMiB: number): MemoryView {
    const m = this.managed.get(name);
    const s = m?.settings ?? settings;
    return {
      maxMiB,
      minMiB: floorMiB(s, maxMiB),
      weight: s.weight,
      targetMiB: m?.pinnedMiB ?? null,
      sizeMiB: m ? m.sizeMiB : null,
    };
  }

  hostView(admitted: AdmittedVm[], figures: VmMemoryFigures[], measuredOverheadPerVmBytes: number | null = null): HostMemoryView {
    const stats = new Map(figures.map((f) => [f.name, f.stats]));
    const residentBytes = figures.reduce((a, f) => a + f.stats.residentBytes, 0);
    const budgetBytes = this.budget.budgetMiB * MIB;
    return {
      budgetBytes,
      overcommit: this.budget.overcommit,
      commitLimitBytes: Math.floor(this.budget.budgetMiB * this.budget.overcommit) * MIB,
      committedBytes: admitted.reduce((a, v) => a + v.maxMiB, 0) * MIB,
      floorsBytes: admitted.reduce((a, v) => a + v.floorMiB, 0) * MIB,
      residentBytes,
      headroomBytes: budgetBytes - residentBytes,
      policyTargetBytes: this.poolMiB * MIB,
      measuredOverheadPerVmBytes: measuredOverheadPerVmBytes === null ? null : Math.round(measuredOverheadPerVmBytes),
      vms: admitted.map((v) => ({
        name: v.name,
        maxBytes: v.maxMiB * MIB,
        floorBytes: v.floorMiB * MIB,
        sizeBytes: this.managed.has(v.name) ? this.managed.get(v.name)!.sizeMiB * MIB : null,
        residentBytes: stats.get(v.name)?.residentBytes ?? 0,
        guestRamBytes: stats.get(v.name)?.guestRamBytes ?? 0,
        overheadBytes: (stats.get(v.name)?.decodeCacheBytes ?? 0) + (stats.get(v.name)?.workerHeapBytes ?? 0),
      })),
    };
  }

  /** One policy step over the monitor's fresh samples. */
  async tick(samples: ReadonlyMap<string, VmSample>, vmOf: (name: string) => EngineVm | undefined): Promise<void> {
    const policyVms: PolicyVm[] = [];
    this.overheadMiB = [...this.managed.keys()].reduce((a, n) => a + (samples.get(n)?.overheadBytes ?? 0), 0) / MIB;
    for (const [name, m] of this.managed) {
      const s = samples.get(name);
      let majorRate = 0;
      if (s && s.guestMajorFaults !== null) {
        if (m.lastMajorFaults !== null && s.t > m.lastT)
          majorRate = Math.max(0, (s.guestMajorFaults - m.lastMajorFaults) / ((s.t - m.lastT) / 1000));
        m.lastMajorFaults = s.guestMajorFaults;
        m.lastT = s.t;
      }
      const floor = floorMiB(m.settings, m.maxMiB);
      const canMove = m.balloon && floor < m.maxMiB;
      policyVms.push({
        name,
        maxMiB: m.maxMiB,
        // A VM without a balloon (or without room under its maximum) holds its maximum.
        floorMiB: canMove ? floor : m.maxMiB,
        weight: m.settings.weight,
        sizeMiB: m.sizeMiB,
        availableMiB: canMove && s && s.guestAvailableBytes !== null ? s.guestAvailableBytes / MIB : null,
        balloonMiB: s ? s.balloonBytes / MIB : 0,
        majorFaultsPerSecond: majorRate,
        pinnedMiB: canMove ? m.pinnedMiB : null,
        lastWantMiB: m.lastWantMiB,
      });
    }
    const decisions = decide(policyVms, this.poolMiB);
    for (const v of policyVms) if (v.availableMiB !== null) this.managed.get(v.name)!.lastWantMiB = wantOf(v).wantMiB;
    const pinnedWhenDecided = new Map([...this.managed].map(([name, m]) => [name, m.pinnedMiB]));
    await this.serially(() => this.apply(decisions, samples, vmOf, pinnedWhenDecided));
  }

  private async apply(
    decisions: ReturnType<typeof decide>,
    samples: ReadonlyMap<string, VmSample>,
    vmOf: (name: string) => EngineVm | undefined,
    pinnedWhenDecided: ReadonlyMap<string, number | null>,
  ): Promise<void> {
    for (const d of decisions) {
      const m = this.managed.get(d.name);
      const vm = vmOf(d.name);
      // A pin set since the decision wins (setTarget moves the balloon itself).
      if (!m || !vm || m.pinnedMiB !== pinnedWhenDecided.get(d.name)) continue;
      try {
        await vm.setBalloonTarget((m.maxMiB - d.toMiB) * MIB);
      } catch (err) {
        this.log(`${d.name}: memory policy could not move the balloon: ${(err as Error).message}`);
        continue;
      }
      m.sizeMiB = d.toMiB;
      const s = samples.get(d.name);
      this.events.emit({
        type: 'policy',
        vm: d.name,
        policy: 'memory',
        action: d.action,
        reason: d.reason,
        values: {
          fromMiB: d.fromMiB,
          toMiB: d.toMiB,
          availableMiB: s?.guestAvailableBytes != null ? Math.round(s.guestAvailableBytes / MIB) : null,
          residentMiB: s ? Math.round(s.residentBytes / MIB) : null,
          poolMiB: this.poolMiB,
        },
      });
    }
  }
}
