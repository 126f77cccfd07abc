/**
 * The host memory budget and admission control (VMware admission control, Hyper-V's startup check): the
 * maxima of the running VMs may add up to budget × overcommit, and their floors to the budget itself, since the
 * floors are what the balloon can never take back. A start that breaks either is refused before anything runs.
 */
import { totalmem } from 'node:os';

const MIB = 1024 * 1024;
/** What the host keeps for itself when no budget is given: the larger of 1 GiB and 10 % of its RAM. */
export function defaultBudgetMiB(hostBytes = totalmem()): number {
  const reserve = Math.max(1024 * MIB, hostBytes * 0.1);
  return Math.max(64, Math.floor((hostBytes - reserve) / MIB));
}

export interface MemoryBudget {
  budgetMiB: number;
  overcommit: number;
}

/** The smallest budget that can hold one VM (config.ts MIN_MEMORY_MIB is 16; a booted Linux needs more). */
export const MIN_BUDGET_MIB = 64;
export const MAX_OVERCOMMIT = 20;

export class BudgetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BudgetError';
  }
}

export function checkBudget(b: MemoryBudget): void {
  if (!Number.isInteger(b.budgetMiB) || b.budgetMiB < MIN_BUDGET_MIB)
    throw new BudgetError(`the memory budget (${b.budgetMiB} MiB) is smaller than one VM: give at least ${MIN_BUDGET_MIB} MiB`);
  if (!Number.isFinite(b.overcommit) || b.overcommit < 1 || b.overcommit > MAX_OVERCOMMIT)
    throw new BudgetError(`--overcommit must be a ratio from 1 to ${MAX_OVERCOMMIT}, got ${b.overcommit}`);
}

export interface AdmittedVm {
  name: string;
  maxMiB: number;
  floorMiB: number;
}

/** Why a VM may not start next to the running ones, or null when it fits. */
export function admissionProblem(budget: MemoryBudget, running: AdmittedVm[], vm: AdmittedVm): string | null {
  const maxSum = running.reduce((a, v) => a + v.maxMiB, 0);
  const floorSum = running.reduce((a, v) => a + v.floorMiB, 0);
  const limit = Math.floor(budget.budgetMiB * budget.overcommit);
  if (vm.floorMiB > budget.budgetMiB)
    return `'${vm.name}' needs at least ${vm.floorMiB} MiB but the whole memory budget is ${budget.budgetMiB} MiB`;
  if (floorSum + vm.floorMiB > budget.budgetMiB)
    return (
      `'${vm.name}' needs at least ${vm.floorMiB} MiB (its minimum) but only ${budget.budgetMiB - floorSum} MiB of the ` +
      `${budget.budgetMiB} MiB budget is not already promised to the minimums of ${running.length} running VMs ` +
      `(${floorSum} MiB)`
    );
  if (maxSum + vm.maxMiB > limit)
    return (
      `'${vm.name}' may use up to ${vm.maxMiB} MiB but the running VMs' maximums already commit ${maxSum} MiB of ` +
      `${limit} MiB (budget ${budget.budgetMiB} MiB × overcommit ${budget.overcommit})`
    );
  return null;
}
