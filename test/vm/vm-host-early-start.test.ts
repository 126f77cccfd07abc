/**
 * A VM process begins a lazy restore before its daemon asks (VmHost.startEarly): the state is loaded but the guest
 * is held, the host's `start` with the same restore gets that outcome under its own id and only then runs the guest,
 * a different start is refused, and a failed early restore is the start's failure. The runtime here is a stand-in
 * module recording what VmHost asks of it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultVmConfig } from '../../src/vm/config.js';
import type { WorkerMessage } from '../../src/vm/protocol.js';
import { VmHost } from '../../src/vm/vm-host.js';

const RUNTIME = `
export const calls = [];
export function createRuntime() {
  return {
    async restore(path, opts) {
      calls.push(['restore', path, opts.lazyRam, !!opts.held]);
      if (path.endsWith('bad')) throw new Error('the state file is corrupt (section hart0)');
      return { bytes: 1, ramChunks: 1, ms: 1, phases: {} };
    },
    launchHeld() { calls.push(['launchHeld']); },
    async start() { calls.push(['start']); },
    async stop() { calls.push(['stop']); },
    counters() { return undefined; },
    consoleInput() {},
  };
}
`;

async function withHost(fn: (host: VmHost, replies: WorkerMessage[], calls: unknown[][]) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tv-early-'));
  try {
    // A module of its own per case: its `calls` start empty.
    const module = join(dir, 'runtime.mjs');
    writeFileSync(module, RUNTIME);
    const replies: WorkerMessage[] = [];
    const host = new VmHost(
      { config: defaultVmConfig({ name: 'early' }), runtimeModule: module, nicLinks: [] },
      { post: (m) => replies.push(m), console: () => {}, ended: () => {} },
    );
    const { calls } = (await import(module)) as { calls: unknown[][] };
    await fn(host, replies, calls);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const EARLY = -2;
const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 2));
  assert.ok(cond(), 'timed out');
};

test('an early restore is loaded held; the host start with the same restore gets it and runs the guest', async () => {
  await withHost(async (host, replies, calls) => {
    host.startEarly({ id: EARLY, type: 'start', restore: { path: '/s/machine.tvstate', lazyRam: true } });
    await host.afterQueued(() => {});
    assert.deepEqual(calls, [['restore', '/s/machine.tvstate', true, true]]);
    assert.equal(host.status().phase, 'idle', 'held: a reattaching daemon must not count it as running');
    assert.deepEqual(replies, [], 'nothing is posted for a start nobody asked for yet');

    host.receive({ id: 7, type: 'start', restore: { path: '/s/machine.tvstate', lazyRam: true } });
    await until(() => replies.length === 1);
    const reply = replies[0] as { id: number; ok: boolean; state?: { ramChunks: number } };
    assert.equal(reply.id, 7);
    assert.equal(reply.ok, true);
    assert.equal(reply.state?.ramChunks, 1);
    assert.deepEqual(calls.slice(1), [['launchHeld']], 'the guest runs once, from the host start on');
    assert.equal(host.status().phase, 'running');
  });
});

test('a host start that differs from the early one is refused and runs nothing', async () => {
  await withHost(async (host, replies, calls) => {
    host.startEarly({ id: EARLY, type: 'start', restore: { path: '/s/a.tvstate', lazyRam: true } });
    host.receive({ id: 3, type: 'start', restore: { path: '/s/b.tvstate', lazyRam: true } });
    await until(() => replies.length === 1);
    const reply = replies[0] as { id: number; ok: boolean; error?: string };
    assert.equal(reply.id, 3);
    assert.equal(reply.ok, false);
    assert.match(reply.error ?? '', /already started \(the start this process began differs\)/);
    assert.ok(!calls.some((c) => c[0] === 'launchHeld'), 'the held guest is not run');
  });
});

test('a failed early restore is the host start failure, with its reason', async () => {
  await withHost(async (host, replies, calls) => {
    host.startEarly({ id: EARLY, type: 'start', restore: { path: '/s/bad', lazyRam: true } });
    host.receive({ id: 9, type: 'start', restore: { path: '/s/bad', lazyRam: true } });
    await until(() => replies.length === 1);
    const reply = replies[0] as { id: number; ok: boolean; error?: string };
    assert.equal(reply.id, 9);
    assert.equal(reply.ok, false);
    assert.match(reply.error ?? '', /corrupt \(section hart0\)/);
    assert.ok(!calls.some((c) => c[0] === 'launchHeld'));
    assert.notEqual(host.status().phase, 'running');
  });
});
