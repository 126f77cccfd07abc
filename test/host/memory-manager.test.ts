/**
 * The memory manager's balloon moves against a pin set while a policy step is still moving the balloon: the pin
 * must win (a step that decided before the pin must not land after it), whichever finishes first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryManager } from '../../src/host/memory/manager.js';
import { EventBus } from '../../src/host/events.js';
import type { EngineVm } from '../../src/host/engine.js';
import type { VmSample } from '../../src/host/monitor/samples.js';
import type { VmConfig } from '../../src/vm/config.js';

const MIB = 1024 * 1024;

/** An engine VM whose balloon moves finish only when the test says so, newest first; it records each target. */
function slowBalloonVm(): { vm: EngineVm; targets: number[]; finishNewestFirst(): void } {
  const targets: number[] = [];
  const pending: (() => void)[] = [];
  const vm = {
    setBalloonTarget(bytes: number): Promise<void> {
      return new Promise((resolve) =>
        pending.push(() => {
          targets.push(bytes);
          resolve();
        }),
      );
    },
  } as unknown as EngineVm;
  return {
    vm,
    targets,
    finishNewestFirst: () =>
      pending
        .splice(0)
        .reverse()
        .forEach((f) => f()),
  };
}

const sample = {
  t: 1,
  residentBytes: 0,
  overheadBytes: 0,
  balloonBytes: 0,
  guestAvailableBytes: 400 * MIB,
  guestMajorFaults: null,
} as VmSample;
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('a pin set while a policy step moves the balloon wins, even when the pin would finish first', async () => {
  // The guest reports 400 MiB available of 512: the policy reclaims most of it.
  const manager = new MemoryManager({ budgetMiB: 512, overcommit: 2 }, new EventBus());
  manager.attach('a', { memoryMiB: 512, balloon: true } as VmConfig, { minMiB: 128, weight: 100 });
  const { vm, targets, finishNewestFirst } = slowBalloonVm();
  const step = manager.tick(new Map([['a', sample]]), () => vm);
  await turn();
  const pin = manager.setTarget('a', vm, 300, 512);
  await turn();
  finishNewestFirst(); // unserialized, the pin's move would land before the step's, and the step's size after it
  await turn();
  finishNewestFirst();
  await Promise.all([step, pin]);
  assert.equal(targets.length, 2, 'the step and the pin each moved the balloon');
  assert.equal(targets.at(-1), (512 - 300) * MIB, `the pin's move is the last (${targets.map((t) => t / MIB)} MiB)`);
  assert.equal(manager.view('a', { minMiB: 128, weight: 100 }, 512).sizeMiB, 300);
});
