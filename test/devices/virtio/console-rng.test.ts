import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestRam } from '../../../src/machine/memory.js';
import { VirtioConsole } from '../../../src/devices/virtio/console.js';
import { VirtioRng } from '../../../src/devices/virtio/rng.js';
import { VirtioDriverMock } from './driver-mock.js';

const MiB = 1024 * 1024;
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

function consoleSetup() {
  const ram = new GuestRam(16 * MiB);
  const mock = new VirtioDriverMock(ram);
  const out: string[] = [];
  const dev = new VirtioConsole({ ram, irq: mock.irq, name: 'hvc0' }, { onOutput: (b) => out.push(text(b)) });
  mock.attach(dev).init(2);
  return { ram, mock, dev, out };
}

test('virtio-console: guest → host bytes reach the output listener', () => {
  const { mock, out, dev } = consoleSetup();
  const extra: string[] = [];
  const off = dev.onOutput((b) => extra.push(text(b)));
  mock.post(1, [new TextEncoder().encode('pong\n')], []);
  mock.kick(1);
  assert.deepEqual(out, ['pong\n']);
  assert.deepEqual(extra, ['pong\n']);
  off();
  mock.post(1, [new TextEncoder().encode('a'), new TextEncoder().encode('b')], [], { indirect: true });
  mock.kick(1);
  assert.deepEqual(out, ['pong\n', 'ab']);
  assert.equal(extra.length, 1, 'removed listener is not called');
  assert.equal(mock.collect(1).length, 2);
  assert.equal(dev.metrics().bytesOut, 7);
});

test('virtio-console: host → guest bytes wait for receive buffers and are split across them', () => {
  const { mock, dev } = consoleSetup();
  dev.input('ping\nshutdown\n');
  assert.equal(dev.pendingInputBytes, 14);
  mock.post(0, [], [8]);
  mock.kick(0);
  let used = mock.collect(0);
  assert.equal(used.length, 1);
  assert.equal(used[0]!.len, 8);
  assert.equal(text(used[0]!.written[0]!), 'ping\nshu');
  mock.post(0, [], [64]);
  mock.post(0, [], [64]);
  mock.kick(0);
  used = mock.collect(0);
  assert.equal(used.length, 1, 'one buffer takes the rest; the other stays with the device');
  assert.equal(text(used[0]!.written[0]!.subarray(0, used[0]!.len)), 'tdown\n');
  dev.input('reboot\n');
  used = mock.collect(0);
  assert.equal(text(used[0]!.written[0]!.subarray(0, used[0]!.len)), 'reboot\n');
  assert.equal(dev.pendingInputBytes, 0);
  assert.equal(dev.metrics().bytesIn, 21);
});

test('virtio-console: pending input survives saveState/loadState and held buffers are re-submitted', () => {
  const { mock, dev, ram } = consoleSetup();
  mock.post(0, [], [16]);
  mock.kick(0);
  const state = structuredClone(dev.saveState());
  const dev2 = new VirtioConsole({ ram, irq: mock.irq, name: 'hvc0' });
  dev2.loadState(state);
  mock.attach(dev2);
  dev2.input('hello');
  const used = mock.collect(0);
  assert.equal(text(used[0]!.written[0]!.subarray(0, used[0]!.len)), 'hello');
});

test('virtio-rng fills every device-writable byte with non-constant random data', () => {
  const ram = new GuestRam(16 * MiB);
  const mock = new VirtioDriverMock(ram);
  const dev = new VirtioRng({ ram, irq: mock.irq, name: 'rng0' });
  mock.attach(dev).init(1);
  mock.post(0, [], [64, 100_000], { indirect: true });
  mock.post(0, [], [64]);
  mock.kick(0);
  const used = mock.collect(0);
  assert.equal(used.length, 2);
  assert.equal(used[0]!.len, 100_064);
  const big = used[0]!.written[1]!;
  const distinct = new Set(big).size;
  assert.ok(distinct > 200, `expected varied bytes, got ${distinct} distinct values`);
  assert.notDeepEqual(used[0]!.written[0], used[1]!.written[0]);
  // A 100000-byte buffer needs two getRandomValues calls (65536 max each): its tail is random too.
  assert.ok(new Set(big.subarray(70_000)).size > 200);
  assert.equal(dev.metrics().bytes, 100_128);
});
