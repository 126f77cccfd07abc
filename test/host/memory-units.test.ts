/**
 * The memory settings, budget and policy arithmetic on their own: sizes with units, refused settings (a minimum
 * above the maximum, a target outside [min, max]), admission with the numbers in the message, and the policy's
 * choices (no ballooning without pressure, floors kept whatever the pressure, weights, quick growth).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyMemoryPatch,
  checkMemoryTarget,
  defaultMemorySettings,
  memorySettingsFromRecord,
  MemorySettingsError,
  parseSizeMiB,
  SizeError,
} from '../../src/host/memory/settings.js';
import { admissionProblem, BudgetError, checkBudget, defaultBudgetMiB } from '../../src/host/memory/budget.js';
import { decide, safetyMarginMiB, shareByWeight, wantOf, type PolicyVm } from '../../src/host/memory/policy.js';

describe('sizes', () => {
  test('binary units, MiB by default', () => {
    assert.equal(parseSizeMiB('512'), 512);
    assert.equal(parseSizeMiB('512M'), 512);
    assert.equal(parseSizeMiB('512MiB'), 512);
    assert.equal(parseSizeMiB('1G'), 1024);
    assert.equal(parseSizeMiB('1.5g'), 1536);
    assert.equal(parseSizeMiB('2048K'), 2);
    assert.equal(parseSizeMiB('1T'), 1024 * 1024);
  });
  test('bad units and fractions of a MiB are refused with the text', () => {
    for (const bad of ['', 'M', '12Q', '1GG', '-5M', '0', '1.5', '100K', 'lots', '5 apples', '64B']) {
      assert.throws(
        () => parseSizeMiB(bad, '--memory-min'),
        (e: unknown) => e instanceof SizeError && e.message.includes('--memory-min'),
        bad,
      );
    }
  });
});

describe('settings', () => {
  test('defaults: floor = maximum (no ballooning), weight 100', () => {
    assert.deepEqual(defaultMemorySettings(), { minMiB: null, weight: 100 });
  });
  test('a minimum above the maximum is refused, the current settings are untouched', () => {
    const cur = defaultMemorySettings();
    assert.throws(() => applyMemoryPatch(cur, { minMiB: 600 }, 512), /minimum \(600 MiB\) is above the maximum \(512 MiB\)/);
    assert.deepEqual(cur, defaultMemorySettings());
    assert.deepEqual(applyMemoryPatch(cur, { minMiB: 128, weight: 300 }, 512), { minMiB: 128, weight: 300 });
  });
  test('weights outside 1..10000 are refused', () => {
    for (const w of [0, -1, 10_001, 1.5])
      assert.throws(() => applyMemoryPatch(defaultMemorySettings(), { weight: w }, 512), MemorySettingsError);
  });
  test('a target must be within [min, max]', () => {
    const s = { minMiB: 128, weight: 100 };
    checkMemoryTarget(128, s, 512);
    checkMemoryTarget(512, s, 512);
    assert.throws(() => checkMemoryTarget(127, s, 512), /within \[128, 512\] MiB/);
    assert.throws(() => checkMemoryTarget(513, s, 512), /within \[128, 512\] MiB/);
    // Without a minimum the floor is the maximum: the only target is the maximum.
    assert.throws(() => checkMemoryTarget(256, defaultMemorySettings(), 512), /within \[512, 512\]/);
  });
  test('a malformed record falls back to the defaults', () => {
    assert.deepEqual(memorySettingsFromRecord({ minMiB: 9999, weight: 100 }, 512), defaultMemorySettings());
    assert.deepEqual(memorySettingsFromRecord('x', 512), defaultMemorySettings());
    assert.deepEqual(memorySettingsFromRecord({ minMiB: 64, weight: 5 }, 512), { minMiB: 64, weight: 5 });
  });
});

describe('budget and admission', () => {
  test('a budget smaller than one VM, or a bad ratio, is refused', () => {
    assert.throws(
      () => checkBudget({ budgetMiB: 32, overcommit: 1 }),
      (e: unknown) => e instanceof BudgetError && /smaller than one VM/.test((e as Error).message),
    );
    assert.throws(() => checkBudget({ budgetMiB: 1024, overcommit: 0.5 }), BudgetError);
    assert.throws(() => checkBudget({ budgetMiB: 1024, overcommit: Number.NaN }), BudgetError);
    checkBudget({ budgetMiB: 1024, overcommit: 2 });
  });
  test('the default budget leaves the host a reserve', () => {
    assert.equal(defaultBudgetMiB(24 * 1024 ** 3), Math.floor((24 - 2.4) * 1024));
    assert.equal(defaultBudgetMiB(4 * 1024 ** 3), 3 * 1024);
  });
  test('four 512 MiB VMs with 128 MiB floors fit 1 GiB at overcommit 2; a fifth does not, with the numbers', () => {
    const budget = { budgetMiB: 1024, overcommit: 2 };
    const vms = ['a', 'b', 'c', 'd'].map((name) => ({ name, maxMiB: 512, floorMiB: 128 }));
    for (let i = 0; i < 4; i++) assert.equal(admissionProblem(budget, vms.slice(0, i), vms[i]!), null);
    const why = admissionProblem(budget, vms, { name: 'e', maxMiB: 512, floorMiB: 128 });
    assert.match(
      why!,
      /'e' may use up to 512 MiB but the running VMs' maximums already commit 2048 MiB of 2048 MiB \(budget 1024 MiB × overcommit 2\)/,
    );
  });
  test('floors must fit the budget itself', () => {
    const budget = { budgetMiB: 1024, overcommit: 4 };
    const running = [{ name: 'a', maxMiB: 1024, floorMiB: 900 }];
    assert.match(
      admissionProblem(budget, running, { name: 'b', maxMiB: 256, floorMiB: 256 })!,
      /only 124 MiB of the 1024 MiB budget/,
    );
    assert.match(admissionProblem(budget, [], { name: 'c', maxMiB: 2048, floorMiB: 2048 })!, /whole memory budget is 1024 MiB/);
  });
});

function vm(name: string, o: Partial<PolicyVm> = {}): PolicyVm {
  return {
    name,
    maxMiB: 512,
    floorMiB: 128,
    weight: 100,
    sizeMiB: 512,
    availableMiB: 470,
    balloonMiB: 0,
    majorFaultsPerSecond: 0,
    pinnedMiB: null,
    lastWantMiB: null,
    ...o,
  };
}

describe('policy', () => {
  test('without pressure every VM keeps (or gets back) its maximum', () => {
    assert.deepEqual(decide([vm('a'), vm('b')], 1024), []);
    const back = decide([vm('a', { sizeMiB: 200, balloonMiB: 312, availableMiB: 150 })], 1024);
    assert.equal(back.length, 1);
    assert.equal(back[0]!.toMiB, 512);
    assert.equal(back[0]!.action, 'return');
  });
  test('overcommitted idle VMs are shrunk to what they use plus a margin, the rest shared out', () => {
    const vms = ['a', 'b', 'c', 'd'].map((n) => vm(n));
    const ds = decide(vms, 870);
    assert.equal(ds.length, 4);
    const total = ds.reduce((a, d) => a + d.toMiB, 0);
    assert.ok(total <= 870, `sizes ${total} fit the pool`);
    for (const d of ds) assert.equal(d.action, 'reclaim');
  });
  test('a filling VM grows at the expense of idle ones; floors are kept whatever the pressure', () => {
    const idle = ['a', 'b', 'c'].map((n) => vm(n, { sizeMiB: 217, balloonMiB: 295, availableMiB: 175 }));
    const busy = vm('busy', { sizeMiB: 217, balloonMiB: 295, availableMiB: 5 });
    const ds = decide([...idle, busy], 870);
    const to = new Map(ds.map((d) => [d.name, d.toMiB]));
    assert.ok(to.get('busy')! > 217, 'the busy VM grows');
    for (const n of ['a', 'b', 'c']) assert.ok((to.get(n) ?? 217) >= 128, 'floor kept');
    // Everyone starving: all stay at or above their floors, the pool is not exceeded beyond the floors.
    const starving = ['a', 'b', 'c', 'd'].map((n) =>
      vm(n, { sizeMiB: 300, balloonMiB: 212, availableMiB: 0, majorFaultsPerSecond: 500 }),
    );
    for (const d of decide(starving, 400)) assert.ok(d.toMiB >= 128);
  });
  test('weights decide who keeps more when wants do not fit', () => {
    const heavy = vm('heavy', { weight: 300, availableMiB: 0, sizeMiB: 400, balloonMiB: 112 });
    const light = vm('light', { weight: 100, availableMiB: 0, sizeMiB: 400, balloonMiB: 112 });
    const ds = new Map(decide([heavy, light], 600).map((d) => [d.name, d.toMiB]));
    assert.ok(ds.get('heavy')! > ds.get('light')!, JSON.stringify([...ds]));
  });
  test('major faults and low available memory ask for more at once', () => {
    const margin = safetyMarginMiB(512);
    assert.ok(
      wantOf(vm('x', { sizeMiB: 200, balloonMiB: 312, availableMiB: 100, majorFaultsPerSecond: 100 })).wantMiB >=
        200 + 2 * margin,
    );
    assert.ok(wantOf(vm('x', { sizeMiB: 200, balloonMiB: 312, availableMiB: 5 })).wantMiB >= 200 + 2 * margin);
  });
  test('a pinned VM is held at its target; a VM without statistics is left alone', () => {
    const ds = decide([vm('p', { pinnedMiB: 256 }), vm('n', { availableMiB: null })], 2048);
    assert.deepEqual(
      ds.map((d) => [d.name, d.toMiB]),
      [['p', 256]],
    );
  });
  test('a pin holds when the pool is short too, and the others share what it leaves', () => {
    // Wants (460 MiB used each, plus margin) far beyond the pool: without the pin both would be squeezed alike.
    const busy = { sizeMiB: 512, availableMiB: 10 };
    const ds = new Map(
      decide([vm('p', { ...busy, pinnedMiB: 300 }), vm('q', busy), vm('r', busy)], 600).map((d) => [d.name, d.toMiB]),
    );
    assert.equal(ds.get('p'), 300, JSON.stringify([...ds]));
    assert.ok(ds.get('q')! >= 128 && ds.get('r')! >= 128 && ds.get('q')! + ds.get('r')! <= 300, JSON.stringify([...ds]));
  });
  test('shareByWeight fills by weight up to each cap', () => {
    const s = shareByWeight(
      [
        { name: 'a', weight: 100, capMiB: 10 },
        { name: 'b', weight: 100, capMiB: 1000 },
      ],
      100,
    );
    assert.equal(s.get('a'), 10);
    assert.equal(s.get('b'), 90);
  });
});

test('growth driven by a rising want is "grow"; a pool share handed back without it is "return"', () => {
  const base = { sizeMiB: 200, balloonMiB: 312, availableMiB: 150, lastWantMiB: 100 };
  const rising = decide([vm('a', { ...base, availableMiB: 100, lastWantMiB: 100 }), vm('b', { availableMiB: 470 })], 800);
  assert.equal(rising.find((d) => d.name === 'a')?.action, 'grow');
  const flat = decide([vm('a', { ...base, lastWantMiB: 150 }), vm('b', { availableMiB: 470 })], 800);
  assert.equal(flat.find((d) => d.name === 'a')?.action, 'return');
});
