import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestRam } from '../../../src/machine/memory.js';
import {
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTIO_MMIO_CONFIG_GENERATION,
  VIRTIO_MMIO_DEVICE_ID,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MMIO_MAGIC_VALUE,
  VIRTIO_MMIO_QUEUE_NUM_MAX,
  VIRTIO_MMIO_QUEUE_READY,
  VIRTIO_MMIO_QUEUE_SEL,
  VIRTIO_MMIO_STATUS,
  VIRTIO_MMIO_VERSION,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  bit,
} from '../../../src/devices/virtio/regs.js';
import { VirtioRng } from '../../../src/devices/virtio/rng.js';
import { VirtioBalloon } from '../../../src/devices/virtio/balloon.js';
import { ALL_TRANSPORT_FEATURES, VirtioDriverMock } from './driver-mock.js';

const MiB = 1024 * 1024;

function rngSetup(accept?: bigint): { ram: GuestRam; mock: VirtioDriverMock; dev: VirtioRng } {
  const ram = new GuestRam(16 * MiB);
  const mock = new VirtioDriverMock(ram);
  let counter = 0;
  const dev = new VirtioRng({ ram, irq: mock.irq, name: 'rng0' }, (b) => b.forEach((_, i) => (b[i] = counter++ & 0xff)));
  mock.attach(dev);
  mock.init(1, accept);
  return { ram, mock, dev };
}

test('identification registers follow virtio-mmio version 2', () => {
  const ram = new GuestRam(16 * MiB);
  const mock = new VirtioDriverMock(ram);
  mock.attach(new VirtioRng({ ram, irq: mock.irq, name: 'rng0' }));
  assert.equal(mock.r(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
  assert.equal(mock.r(VIRTIO_MMIO_VERSION), 2);
  assert.equal(mock.r(VIRTIO_MMIO_DEVICE_ID), 4);
  const f = mock.deviceFeatures();
  assert.equal(f & ALL_TRANSPORT_FEATURES, ALL_TRANSPORT_FEATURES);
  mock.w(VIRTIO_MMIO_QUEUE_SEL, 0);
  assert.equal(mock.r(VIRTIO_MMIO_QUEUE_NUM_MAX), 64);
  mock.w(VIRTIO_MMIO_QUEUE_SEL, 1);
  assert.equal(mock.r(VIRTIO_MMIO_QUEUE_NUM_MAX), 0, 'queues that do not exist report QueueNumMax 0');
  assert.equal(mock.dev.read(VIRTIO_MMIO_MAGIC_VALUE, 1), 0, 'non-32-bit register accesses read 0');
});

test('FEATURES_OK is refused without VERSION_1 and for features never offered', () => {
  const ram = new GuestRam(16 * MiB);
  const mock = new VirtioDriverMock(ram);
  mock.attach(new VirtioRng({ ram, irq: mock.irq, name: 'rng0' }));
  assert.equal(mock.negotiate(bit(VIRTIO_F_INDIRECT_DESC)), false, 'legacy-only driver refused');
  assert.equal(mock.negotiate(bit(VIRTIO_F_VERSION_1)), true);
  // A driver that claims a feature the device never offered.
  mock.negotiate(0n);
  mock.w(0x024, 0);
  mock.w(0x020, 1 << 3);
  mock.w(0x024, 1);
  mock.w(0x020, 1);
  mock.w(VIRTIO_MMIO_STATUS, 3 | VIRTIO_CONFIG_S_FEATURES_OK);
  assert.equal(mock.status & VIRTIO_CONFIG_S_FEATURES_OK, 0);
});

test('a chain is validated, handled, used, and interrupts the driver', () => {
  const { mock, dev } = rngSetup();
  mock.post(0, [], [8, 8]);
  assert.ok(mock.kick(0));
  const [used] = mock.collect(0);
  assert.equal(used!.len, 16);
  assert.deepEqual([...used!.written[0]!, ...used!.written[1]!], [...Array(16).keys()]);
  assert.equal(mock.irq.level, true);
  assert.equal(mock.ackInterrupt(), VIRTIO_MMIO_INT_VRING);
  assert.equal(mock.irq.level, false);
  assert.equal(dev.metrics().chains, 1);
});

test('indirect chains are followed', () => {
  const { mock } = rngSetup();
  mock.post(0, [], [3, 5, 7], { indirect: true });
  mock.kick(0);
  const [used] = mock.collect(0);
  assert.equal(used!.len, 15);
  assert.deepEqual(
    used!.written.map((b) => b.length),
    [3, 5, 7],
  );
});

test('EVENT_IDX: the device interrupts only when used_event is crossed and asks for kicks with avail_event', () => {
  const { mock, ram } = rngSetup();
  const q = mock.queues[0]!;
  mock.post(0, [], [4]);
  assert.ok(mock.kick(0));
  mock.collect(0); // re-arms used_event = 1
  mock.ackInterrupt();
  assert.equal(ram.readU16(q.used + 4 + 8 * q.size), 1, 'avail_event = last consumed index');
  // The driver now says: interrupt me only after used index passes 5.
  mock.post(0, [], [4]);
  ram.writeU16(q.avail + 4 + 2 * q.size, 5);
  const before = mock.irq.rises;
  assert.ok(mock.kick(0));
  assert.equal(mock.irq.rises, before, 'no interrupt before used_event is crossed');
  for (let i = 0; i < 4; i++) {
    mock.post(0, [], [4]);
    mock.kick(0);
  }
  assert.equal(mock.irq.rises, before + 1, 'an interrupt once used idx passes used_event');
  assert.equal(mock.collect(0).length, 5);
});

test('without EVENT_IDX, VIRTQ_AVAIL_F_NO_INTERRUPT suppresses interrupts', () => {
  const { mock, ram } = rngSetup(bit(VIRTIO_F_VERSION_1));
  const q = mock.queues[0]!;
  ram.writeU16(q.avail, VIRTQ_AVAIL_F_NO_INTERRUPT);
  mock.post(0, [], [4]);
  mock.kick(0);
  assert.equal(mock.irq.rises, 0);
  assert.equal(mock.collect(0).length, 1);
  ram.writeU16(q.avail, 0);
  mock.post(0, [], [4]);
  mock.kick(0);
  assert.equal(mock.irq.rises, 1);
});

test('kicks before DRIVER_OK are served when DRIVER_OK is set', () => {
  const ram = new GuestRam(16 * MiB);
  const mock = new VirtioDriverMock(ram);
  mock.attach(new VirtioRng({ ram, irq: mock.irq, name: 'rng0' }));
  mock.negotiate();
  mock.setupQueue(0);
  mock.post(0, [], [4]);
  mock.notify(0);
  assert.equal(mock.collect(0).length, 0, 'nothing consumed before DRIVER_OK');
  mock.driverOk();
  assert.equal(mock.collect(0).length, 1);
});

function expectNeedsReset(mock: VirtioDriverMock, dev: VirtioRng, kind: string): void {
  assert.ok(mock.status & VIRTIO_CONFIG_S_NEEDS_RESET, `${kind}: NEEDS_RESET set`);
  assert.ok(dev.lastProtocolError?.startsWith(kind), `expected ${kind}, got ${dev.lastProtocolError}`);
  assert.ok(mock.ackInterrupt() & VIRTIO_MMIO_INT_CONFIG, `${kind}: configuration interrupt`);
  assert.equal(mock.collect(0).length, 0, `${kind}: nothing used`);
}

/** Writes a raw chain (descriptor table entries) into queue 0 and makes `head` available. */
function postRaw(mock: VirtioDriverMock, entries: [number, number, number, number][], head = 0, availIdx?: number): void {
  const q = mock.queues[0]!;
  entries.forEach(([addr, len, flags, next], i) => mock.writeDesc(q.desc, i, addr, len, flags, next));
  mock.ram.writeU16(q.avail + 4, head);
  mock.ram.writeU16(q.avail + 2, availIdx ?? 1);
  mock.notify(0);
}

const hostileCases: [string, (mock: VirtioDriverMock) => void][] = [
  ['DescriptorOutOfRange', (m) => postRaw(m, [[m.ram.base + m.ram.size - 4, 8, VIRTQ_DESC_F_WRITE, 0]])],
  ['DescriptorOutOfRange', (m) => postRaw(m, [[0x1000, 8, VIRTQ_DESC_F_WRITE, 0]])],
  ['DescriptorOutOfRange', (m) => postRaw(m, [[2 ** 60, 8, VIRTQ_DESC_F_WRITE, 0]])],
  [
    'ChainLoop',
    (m) =>
      postRaw(m, [
        [m.ram.base + 0x40_0000, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1],
        [m.ram.base + 0x40_0000, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0],
      ]),
  ],
  ['NextOutOfRange', (m) => postRaw(m, [[m.ram.base + 0x40_0000, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 999]])],
  ['HeadOutOfRange', (m) => postRaw(m, [[m.ram.base + 0x40_0000, 8, VIRTQ_DESC_F_WRITE, 0]], 4000)],
  ['BadAvailIndex', (m) => postRaw(m, [[m.ram.base + 0x40_0000, 8, VIRTQ_DESC_F_WRITE, 0]], 0, 1000)],
  [
    'WriteBeforeRead',
    (m) =>
      postRaw(m, [
        [m.ram.base + 0x40_0000, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1],
        [m.ram.base + 0x40_1000, 8, 0, 0],
      ]),
  ],
  [
    'ChainTooLarge',
    (m) =>
      postRaw(m, [
        [m.ram.base, 0x20_0000, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1],
        [m.ram.base, 0x10_0000, VIRTQ_DESC_F_WRITE, 0],
      ]),
  ],
  [
    'IndirectWithNext',
    (m) =>
      postRaw(m, [
        [m.ram.base + 0x40_0000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1],
        [m.ram.base, 8, VIRTQ_DESC_F_WRITE, 0],
      ]),
  ],
  ['BadIndirectLength', (m) => postRaw(m, [[m.ram.base + 0x40_0000, 24, VIRTQ_DESC_F_INDIRECT, 0]])],
  ['ChainTooLong', (m) => postRaw(m, [[m.ram.base + 0x40_0000, 16 * 8192, VIRTQ_DESC_F_INDIRECT, 0]])],
  ['DescriptorOutOfRange', (m) => postRaw(m, [[m.ram.base + m.ram.size - 16, 32, VIRTQ_DESC_F_INDIRECT, 0]])],
  [
    'NestedIndirect',
    (m) => {
      m.writeDesc(m.ram.base + 0x40_0000, 0, m.ram.base + 0x40_1000, 16, VIRTQ_DESC_F_INDIRECT, 0);
      postRaw(m, [[m.ram.base + 0x40_0000, 16, VIRTQ_DESC_F_INDIRECT, 0]]);
    },
  ],
  [
    'ChainLoop',
    (m) => {
      m.writeDesc(m.ram.base + 0x40_0000, 0, m.ram.base + 0x40_1000, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
      m.writeDesc(m.ram.base + 0x40_0000, 1, m.ram.base + 0x40_1000, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
      postRaw(m, [[m.ram.base + 0x40_0000, 32, VIRTQ_DESC_F_INDIRECT, 0]]);
    },
  ],
];

for (const [kind, make] of hostileCases) {
  test(`a hostile chain (${kind}) puts the device into NEEDS_RESET`, () => {
    const { mock, dev } = rngSetup();
    make(mock);
    expectNeedsReset(mock, dev, kind);
    // Further kicks are ignored until the driver resets, and a reset brings the device back.
    mock.notify(0);
    mock.init(1);
    assert.equal(mock.status & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    mock.post(0, [], [4]);
    mock.kick(0);
    assert.equal(mock.collect(0).length, 1);
  });
}

test('an indirect descriptor is refused when INDIRECT_DESC was not negotiated', () => {
  const { mock, dev } = rngSetup(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX));
  postRaw(mock, [[mock.ram.base + 0x40_0000, 16, VIRTQ_DESC_F_INDIRECT, 0]]);
  expectNeedsReset(mock, dev, 'IndirectNotNegotiated');
});

test('a ring outside RAM or misaligned puts the device into NEEDS_RESET when the queue is made ready', () => {
  for (const [desc, kind] of [
    [0x1000, 'RingOutOfRange'],
    [0x8000_0008, 'RingMisaligned'],
  ] as const) {
    const ram = new GuestRam(16 * MiB);
    const mock = new VirtioDriverMock(ram);
    const dev = new VirtioRng({ ram, irq: mock.irq, name: 'rng0' });
    mock.attach(dev);
    mock.negotiate();
    mock.w(VIRTIO_MMIO_QUEUE_SEL, 0);
    mock.w(0x038, 16);
    mock.w(0x080, desc);
    mock.w(0x090, 0x8000_1000);
    mock.w(0x0a0, 0x8000_2000);
    mock.w(VIRTIO_MMIO_QUEUE_READY, 1);
    assert.equal(mock.r(VIRTIO_MMIO_QUEUE_READY), 0);
    assert.ok(mock.status & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert.ok(dev.lastProtocolError?.startsWith(kind));
  }
});

test('queue size must be a power of two no larger than QueueNumMax', () => {
  const ram = new GuestRam(16 * MiB);
  const mock = new VirtioDriverMock(ram);
  const dev = new VirtioRng({ ram, irq: mock.irq, name: 'rng0' });
  mock.attach(dev);
  mock.negotiate();
  mock.setupQueue(0, 48);
  assert.equal(mock.r(VIRTIO_MMIO_QUEUE_READY), 0);
  assert.ok(dev.lastProtocolError?.startsWith('BadQueueSize'));
});

test('reset (status 0) clears status, features, queues and interrupts', () => {
  const { mock } = rngSetup();
  mock.post(0, [], [4]);
  mock.kick(0);
  assert.equal(mock.irq.level, true);
  mock.w(VIRTIO_MMIO_STATUS, 0);
  assert.equal(mock.status, 0);
  assert.equal(mock.irq.level, false);
  mock.w(VIRTIO_MMIO_QUEUE_SEL, 0);
  assert.equal(mock.r(VIRTIO_MMIO_QUEUE_READY), 0);
});

test('a host configuration change bumps ConfigGeneration and raises a configuration interrupt', () => {
  const ram = new GuestRam(16 * MiB);
  const mock = new VirtioDriverMock(ram);
  const balloon = new VirtioBalloon({ ram, irq: mock.irq, name: 'balloon0' });
  mock.attach(balloon).init(4);
  const gen = mock.r(VIRTIO_MMIO_CONFIG_GENERATION);
  balloon.setTarget(100);
  assert.equal(mock.r(VIRTIO_MMIO_CONFIG_GENERATION), gen + 1);
  assert.equal(mock.ackInterrupt(), VIRTIO_MMIO_INT_CONFIG);
  assert.equal(mock.config32(0), 100);
});

test('saveState/loadState round-trips the transport and keeps the rings going', () => {
  const { mock, dev, ram } = rngSetup();
  mock.post(0, [], [4]);
  mock.kick(0);
  mock.collect(0);
  mock.ackInterrupt();
  const state = structuredClone(dev.saveState());
  assert.equal(state.type, 'virtio-rng');
  const mock2 = new VirtioDriverMock(ram);
  const dev2 = new VirtioRng({ ram, irq: mock2.irq, name: 'rng0' });
  dev2.loadState(state);
  mock.attach(dev2);
  mock.post(0, [], [4]);
  mock.kick(0);
  assert.equal(mock.collect(0).length, 1);
  assert.throws(() => dev2.loadState({ ...state, version: 99 }), /unsupported state version/);
});
