import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  isActive,
  LIFECYCLE_EVENTS,
  nextState,
  transition,
  TransitionError,
  VM_STATES,
  type LifecycleEvent,
  type VmState,
} from '../../src/host/lifecycle.js';

/** The whole table, written out independently of the implementation: every (state, event) pair not listed is refused. */
const ALLOWED: Record<string, VmState> = {
  'defined start': 'running',
  'defined delete': 'defined',
  'defined update': 'defined',
  'running pause': 'paused',
  'running stop': 'stopped',
  'running shutdown': 'running',
  'running reboot': 'rebooting',
  'running guest-poweroff': 'stopped',
  'running guest-reboot': 'rebooting',
  'running crash': 'crashed',
  'paused resume': 'running',
  'paused stop': 'stopped',
  'paused crash': 'crashed',
  'rebooting stop': 'stopped',
  'rebooting rebooted': 'running',
  'rebooting guest-poweroff': 'stopped',
  'rebooting crash': 'crashed',
  'stopped start': 'running',
  'stopped delete': 'stopped',
  'stopped update': 'stopped',
  'crashed start': 'running',
  'crashed stop': 'crashed',
  'crashed delete': 'crashed',
  'crashed update': 'crashed',
};

test('every (state, event) pair: allowed ones go where the table says, all others are refused', () => {
  let allowed = 0;
  for (const s of VM_STATES) {
    for (const e of LIFECYCLE_EVENTS) {
      const expected = ALLOWED[`${s} ${e}`];
      assert.equal(nextState(s, e), expected, `${s} --${e}-->`);
      if (expected) {
        assert.equal(transition(s, e), expected);
        allowed++;
      } else {
        assert.throws(
          () => transition(s, e),
          (err: unknown) => err instanceof TransitionError && err.code === 'INVALID_STATE' && err.from === s && err.event === e,
        );
      }
    }
  }
  assert.equal(allowed, Object.keys(ALLOWED).length);
});

test('delete only from inactive states; wrong-state messages explain what to do', () => {
  for (const s of VM_STATES) assert.equal(nextState(s, 'delete') !== undefined, !isActive(s), s);
  assert.match(new TransitionError('running', 'delete').message, /stop it first, or delete with force/);
  assert.match(new TransitionError('paused', 'shutdown').message, /resume it first/);
});

test('every state is reachable from defined, and every active state can be stopped', () => {
  const seen = new Set<VmState>(['defined']);
  const queue: VmState[] = ['defined'];
  while (queue.length) {
    const s = queue.shift()!;
    for (const e of LIFECYCLE_EVENTS as readonly LifecycleEvent[]) {
      const t = nextState(s, e);
      if (t && !seen.has(t)) {
        seen.add(t);
        queue.push(t);
      }
    }
  }
  assert.deepEqual([...seen].sort(), [...VM_STATES].sort());
  for (const s of VM_STATES) if (isActive(s)) assert.equal(nextState(s, 'stop'), 'stopped');
});
