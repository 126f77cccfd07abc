/**
 * The memory policy's arithmetic, free of I/O so it can be checked on its own: given each VM's floor, maximum,
 * weight and what its guest reports, it decides every VM's size (maximum − balloon) so that the sizes fit the
 * pool (a share of the host budget). Hyper-V Dynamic Memory's buffer and VMware's shares, in one pass:
 *
 * - a VM whose sizes all fit the pool keeps its maximum (no ballooning without pressure);
 * - otherwise each VM first gets what it wants: what its guest uses plus a safety margin, never under its floor,
 *   more at once when its available memory runs low or it major-faults (give back quickly);
 * - what is left is shared by weight up to each maximum; when even the wants do not fit, the floors are kept
 *   and the rest is shared by weight up to each want, so the VMs with the most available memory give first.
 */
export interface PolicyVm {
  name: string;
  maxMiB: number;
  floorMiB: number;
  weight: number;
  /** The size the balloon target gives it now. */
  sizeMiB: number;
  /** From the guest's balloon statistics; null when it has not reported (then the VM is left as it is). */
  availableMiB: number | null;
  /** Memory the guest holds in its balloon now (device count). */
  balloonMiB: number;
  /** Major faults per second since the previous step. */
  majorFaultsPerSecond: number;
  /** A size pinned by the user (typevisor set --memory-target), or null. */
  pinnedMiB: number | null;
  /** What it wanted at the previous step (null: first step): a rising want marks growth by demand. */
  lastWantMiB: number | null;
}

export interface PolicyDecision {
  name: string;
  fromMiB: number;
  toMiB: number;
  action: 'reclaim' | 'grow' | 'return';
  reason: string;
}

/** Guest memory kept available above what the guest uses: the larger of 32 MiB and 8 % of the maximum. */
export function safetyMarginMiB(maxMiB: number): number {
  return Math.max(32, Math.round(maxMiB * 0.08));
}
/** Major faults per second that count as memory pressure (no swap: refaults of evicted file pages). */
export const MAJOR_FAULT_PRESSURE = 20;
/** Changes smaller than this are not worth a balloon round trip. */
export const MIN_STEP_MIB = 8;

export interface Want {
  wantMiB: number;
  why: string;
}

/** What one VM should have, before the pool is shared out. */
export function wantOf(v: PolicyVm): Want {
  const clamp = (x: number): number => Math.min(v.maxMiB, Math.max(v.floorMiB, Math.round(x)));
  if (v.pinnedMiB !== null) return { wantMiB: clamp(v.pinnedMiB), why: `pinned at ${v.pinnedMiB} MiB by its target` };
  if (v.availableMiB === null) return { wantMiB: v.sizeMiB, why: 'no guest statistics yet' };
  const margin = safetyMarginMiB(v.maxMiB);
  const used = Math.max(0, v.maxMiB - v.balloonMiB - v.availableMiB);
  if (v.majorFaultsPerSecond >= MAJOR_FAULT_PRESSURE)
    return {
      wantMiB: clamp(Math.max(used + margin, v.sizeMiB + 2 * margin)),
      why: `major-faulting (${Math.round(v.majorFaultsPerSecond)}/s)`,
    };
  if (v.availableMiB < margin / 2)
    return {
      wantMiB: clamp(Math.max(used + margin, v.sizeMiB + 2 * margin)),
      why: `only ${Math.round(v.availableMiB)} MiB available (margin ${margin} MiB)`,
    };
  return { wantMiB: clamp(used + margin), why: `uses ${Math.round(used)} MiB, ${Math.round(v.availableMiB)} MiB available` };
}

/** Shares `amount` among VMs by weight, each up to its own cap (water-filling); returns what each gets. */
export function shareByWeight(vms: { name: string; weight: number; capMiB: number }[], amount: number): Map<string, number> {
  const out = new Map<string, number>(vms.map((v) => [v.name, 0]));
  let open = vms.filter((v) => v.capMiB > 0);
  let left = amount;
  while (left > 0.5 && open.length) {
    const totalWeight = open.reduce((a, v) => a + v.weight, 0);
    let used = 0;
    const next: typeof open = [];
    for (const v of open) {
      const give = Math.min(v.capMiB - out.get(v.name)!, (left * v.weight) / totalWeight);
      out.set(v.name, out.get(v.name)! + give);
      used += give;
      if (out.get(v.name)! < v.capMiB - 0.5) next.push(v);
    }
    left -= used;
    if (used < 0.5) break;
    open = next;
  }
  for (const [k, x] of out) out.set(k, Math.floor(x));
  return out;
}

/** Every VM's new size; only changes of at least MIN_STEP_MIB (or to a floor, maximum or pin) are returned. */
export function decide(vms: PolicyVm[], poolMiB: number): PolicyDecision[] {
  const maxSum = vms.reduce((a, v) => a + v.maxMiB, 0);
  const wants = new Map(vms.map((v) => [v.name, wantOf(v)]));
  const sizes = new Map<string, number>();
  let context: string;
  if (maxSum <= poolMiB) {
    for (const v of vms) sizes.set(v.name, v.pinnedMiB ?? v.maxMiB);
    context = `every maximum fits the ${poolMiB} MiB pool`;
  } else {
    const wantSum = vms.reduce((a, v) => a + wants.get(v.name)!.wantMiB, 0);
    if (wantSum <= poolMiB) {
      const extra = shareByWeight(
        vms.map((v) => ({
          name: v.name,
          weight: v.weight,
          capMiB: v.pinnedMiB !== null ? 0 : v.maxMiB - wants.get(v.name)!.wantMiB,
        })),
        poolMiB - wantSum,
      );
      for (const v of vms) sizes.set(v.name, wants.get(v.name)!.wantMiB + extra.get(v.name)!);
      context = `pool ${poolMiB} MiB, wanted ${wantSum} MiB`;
    } else {
      // A pin is the operator's: it holds when the pool is short too, and the others share what it leaves.
      const pinned = vms.filter((v) => v.pinnedMiB !== null);
      const free = vms.filter((v) => v.pinnedMiB === null);
      for (const v of pinned) sizes.set(v.name, wants.get(v.name)!.wantMiB);
      const pinnedSum = pinned.reduce((a, v) => a + wants.get(v.name)!.wantMiB, 0);
      const floorSum = free.reduce((a, v) => a + v.floorMiB, 0);
      const extra = shareByWeight(
        free.map((v) => ({ name: v.name, weight: v.weight, capMiB: wants.get(v.name)!.wantMiB - v.floorMiB })),
        Math.max(0, poolMiB - pinnedSum - floorSum),
      );
      for (const v of free) sizes.set(v.name, v.floorMiB + extra.get(v.name)!);
      context = `pool ${poolMiB} MiB short: wanted ${wantSum} MiB, floors ${floorSum} MiB, pinned ${pinnedSum} MiB`;
    }
  }
  const out: PolicyDecision[] = [];
  for (const v of vms) {
    if (v.availableMiB === null && v.pinnedMiB === null) continue; // nothing known about this guest yet
    const to = Math.min(v.maxMiB, Math.max(v.floorMiB, sizes.get(v.name)!));
    const edge = to === v.floorMiB || to === v.maxMiB || to === v.pinnedMiB;
    if (to === v.sizeMiB || (Math.abs(to - v.sizeMiB) < MIN_STEP_MIB && !edge)) continue;
    const want = wants.get(v.name)!;
    // Growth the guest's own demand drives is 'grow'; a share of the pool handed back without it is 'return'.
    const demand = want.wantMiB > v.sizeMiB || (v.lastWantMiB !== null && want.wantMiB >= v.lastWantMiB + MIN_STEP_MIB);
    const action = to < v.sizeMiB ? 'reclaim' : demand ? 'grow' : 'return';
    out.push({
      name: v.name,
      fromMiB: v.sizeMiB,
      toMiB: to,
      action,
      reason: `${action} ${v.sizeMiB} -> ${to} MiB: ${want.why}, wants ${want.wantMiB} MiB (floor ${v.floorMiB}, max ${v.maxMiB}, weight ${v.weight}); ${context}`,
    });
  }
  return out;
}
