/**
 * The no-progress check the board's run loop and each hart thread (src/machine/parallel) apply after a hart's run.
 */
import type { HartPort } from './hart-port.js';

/**
 * Identical exceptions in a row (same cause, pc and tval, no console output between) after which a hart is
 * reported as making no progress: a healthy guest never repeats one fault this often (each retry of a
 * handled fault changes something), while a broken one (a trap handler that faults itself, a kernel jumping
 * to unmapped memory) would spin at 100% CPU forever.
 */
export const TRAP_LOOP_LIMIT = 1_000_000;

/** Throws when `hart` has taken the same exception TRAP_LOOP_LIMIT times in a row. */
export function checkProgress(hart: HartPort): void {
  if (hart.sameTrapRun === undefined || hart.sameTrapRun() < TRAP_LOOP_LIMIT) return;
  const last = hart.recentTraps?.().at(-1) ?? 'unknown';
  throw new Error(`no progress: the same exception repeated ${TRAP_LOOP_LIMIT} times in a row with no console output (${last})`);
}
