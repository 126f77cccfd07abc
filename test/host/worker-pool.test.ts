/**
 * The warm pool (src/host/worker-pool.ts) on its own, and the built-in engine handing VMs to warm workers:
 * - bounded: never more than `size` idle items, refilled after a take, nothing started while memory is tight
 *   (and idle items let go), an item that dies idle is dropped and replaced (not in a loop: MAX_IDLE_DEATHS in a
 *   row wait for the next take), close disposes the rest;
 * - a VM started on a warm worker runs (console, stats, exec through the toy runtime) and the pool refills.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_IDLE_DEATHS, WarmPool } from '../../src/host/worker-pool.js';
import { WorkerEngine } from '../../src/vm/worker-engine.js';
import { defaultVmConfig } from '../../src/vm/config.js';
import { TOY_RUNTIME } from './daemon-harness.js';

const until = async (what: string, ok: () => boolean, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

interface Item {
  id: number;
  die(): void;
  dead: Promise<void>;
}

function items() {
  let next = 0;
  const started: Item[] = [];
  const disposed: number[] = [];
  return {
    started,
    disposed,
    start: async (): Promise<Item> => {
      let die!: () => void;
      const dead = new Promise<void>((r) => (die = r));
      const item = { id: next++, die, dead };
      started.push(item);
      return item;
    },
    dispose: async (i: Item) => void disposed.push(i.id),
    died: (i: Item) => i.dead,
  };
}

test('a warm pool keeps at most size items ready, refills after take, and hands out each once', async () => {
  const it = items();
  const pool = new WarmPool<Item>({ size: 2, ...it, refillDelayMs: 1, freeBytes: () => 2 ** 40 });
  pool.fill();
  await until('two idle', () => pool.stats().idle === 2);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(it.started.length, 2, 'no more than size started');
  const a = pool.take()!;
  const b = pool.take()!;
  assert.notEqual(a.id, b.id);
  assert.equal(pool.take(), undefined, 'empty: the caller starts its own');
  await until('refilled', () => pool.stats().idle === 2);
  assert.deepEqual(pool.stats(), { size: 2, idle: 2, starting: false, hits: 2, misses: 1 });
  // An idle item that dies is dropped (and replaced: a refill may still be due).
  const idleIds = (): number[] => (pool as unknown as { idle: Item[] }).idle.map((i) => i.id);
  assert.deepEqual(idleIds(), [2, 3]);
  it.started[2]!.die();
  await until('dropped', () => !idleIds().includes(2));
  pool.take();
  await until('replaced', () => pool.stats().idle === 2);
  assert.ok(!idleIds().includes(2));
  await pool.close();
  assert.equal(it.disposed.length, 2, 'close disposes the idle items');
  assert.equal(pool.take(), undefined);
});

test('a warm pool starts nothing while memory is tight and lets idle items go', async () => {
  const it = items();
  let free = 2 ** 40;
  const pool = new WarmPool<Item>({ size: 2, ...it, refillDelayMs: 1, minFreeBytes: 1000, freeBytes: () => free });
  pool.fill();
  await until('two idle', () => pool.stats().idle === 2);
  free = 10;
  assert.ok(pool.take(), 'what is ready is still handed out');
  await until('the other let go', () => pool.stats().idle === 0);
  assert.deepEqual(it.disposed, [1]);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(it.started.length, 2, 'no start while memory is tight');
  free = 2 ** 40;
  pool.take();
  await until('refilled once memory is back', () => pool.stats().idle === 2);
  await pool.close();
});

test('an item that dies idle is replaced without a take, until MAX_IDLE_DEATHS die in a row', async () => {
  const it = items();
  const logs: string[] = [];
  const pool = new WarmPool<Item>({ size: 1, ...it, refillDelayMs: 1, freeBytes: () => 2 ** 40, log: (l) => logs.push(l) });
  pool.fill();
  for (let n = 1; n <= MAX_IDLE_DEATHS; n++) {
    await until(`item ${n} idle`, () => it.started.length === n && pool.stats().idle === 1);
    it.started[n - 1]!.die();
    await until(`item ${n} dropped`, () => pool.stats().idle === 0 || it.started.length > n);
  }
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(it.started.length, MAX_IDLE_DEATHS, 'no replacement after MAX_IDLE_DEATHS deaths in a row');
  assert.equal(pool.stats().idle, 0);
  assert.match(logs.at(-1)!, new RegExp(`an idle item died \\(${MAX_IDLE_DEATHS} in a row\\)`));
  assert.equal(pool.take(), undefined, 'a take finds none');
  await until('a take starts replacing again', () => pool.stats().idle === 1);
  await pool.close();
});

test('a size-0 pool is off; a failing start is retried on the next take', async () => {
  const it = items();
  const off = new WarmPool<Item>({ size: 0, ...it });
  off.fill();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(it.started.length, 0);
  let fail = true;
  const logs: string[] = [];
  const pool = new WarmPool<Item>({
    size: 1,
    ...it,
    start: () => (fail ? Promise.reject(new Error('no thread')) : it.start()),
    refillDelayMs: 1,
    freeBytes: () => 2 ** 40,
    log: (l) => logs.push(l),
  });
  pool.fill();
  await until('a logged failure', () => logs.length === 1);
  assert.match(logs[0]!, /no thread/);
  fail = false;
  assert.equal(pool.take(), undefined);
  await until('started after the failure', () => pool.stats().idle === 1);
  await pool.close();
});

test('the worker engine runs a VM on a warm worker and refills its pool', { timeout: 120_000 }, async () => {
  const engine = new WorkerEngine({ runtimeModule: TOY_RUNTIME, warmWorkers: 1 });
  try {
    await until('a warm worker', () => engine.pool!.stats().idle === 1, 60_000);
    let out = '';
    const vm = engine.create(defaultVmConfig({ name: 'warm', append: 'toy=idle' }), {
      console: (b) => (out += Buffer.from(b).toString()),
      guestReboot: () => {},
      exit: () => {},
    });
    await vm.start();
    assert.equal(engine.pool!.stats().hits, 1, 'the VM got the warm worker');
    await until('boot line', () => out.includes('toy: warm booted (idle)'));
    const r = await vm.exec({ argv: ['echo', 'hello'], timeoutMs: 10_000 });
    assert.equal(Buffer.from(r.stdout).toString(), 'hello\n');
    assert.ok((await vm.stats()).instret >= 0);
    await vm.stop();
    await until('refilled', () => engine.pool!.stats().idle === 1, 60_000);
  } finally {
    await engine.close();
  }
});
