/**
 * virtio-net against the guest-side virtqueue mock: negotiation and configuration, transmit and receive (with and
 * without MRG_RXBUF), malformed frames, the bounded pending queue, rate limiting on fake time, save/restore.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GuestRam } from '../../../src/machine/memory.js';
import {
  MAX_FRAME_BYTES,
  VIRTIO_NET_F_CSUM,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_LEN,
  VirtioNet,
  OFFLOAD_FEATURES,
  formatMac,
  parseMac,
  randomMac,
  type VirtioNetOptions,
} from '../../../src/devices/virtio/net.js';
import {
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTIO_MMIO_CONFIG_GENERATION,
  VIRTIO_MMIO_DEVICE_ID,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_QUEUE_NUM_MAX,
  VIRTIO_MMIO_QUEUE_SEL,
  bit,
  hasFeature,
} from '../../../src/devices/virtio/regs.js';
import { VirtioDriverMock, type UsedEntry } from './driver-mock.js';
import { buildTcpFrame, parseTcp } from '../../../src/net/packet/tcp.js';
import { parseIpv4 } from '../../../src/net/packet/ipv4.js';
import { foldChecksum, pseudoHeaderSum } from '../../../src/net/packet/checksum.js';
import type { FrameOffload } from '../../../src/net/packet/offload.js';

const MiB = 1024 * 1024;
const RX = 0;
const TX = 1;
const MAC = '52:54:00:12:34:56';
const ALL = (1n << 64n) - 1n;

/** Timers and a clock that only move when the test says so. */
class FakeTime {
  now = 0;
  private seq = 0;
  private timers: { at: number; id: number; fn: () => void }[] = [];
  readonly options = {
    now: () => this.now,
    setTimer: (fn: () => void, ms: number) => {
      const id = ++this.seq;
      this.timers.push({ at: this.now + ms, id, fn });
      return id;
    },
    clearTimer: (id: unknown) => {
      this.timers = this.timers.filter((t) => t.id !== id);
    },
  };
  get pending(): number {
    return this.timers.length;
  }
  /** Runs the earliest timer (moving the clock to it); false when none is due by `limit`. */
  runNext(limit = Infinity): boolean {
    if (this.timers.length === 0) return false;
    this.timers.sort((a, b) => a.at - b.at || a.id - b.id);
    const t = this.timers[0]!;
    if (t.at > limit) return false;
    this.timers.shift();
    this.now = Math.max(this.now, t.at);
    t.fn();
    return true;
  }
}

/** An Ethernet frame of `length` bytes whose content identifies it. */
function frame(length: number, seed = 1): Uint8Array {
  const f = new Uint8Array(length);
  for (let i = 0; i < length; i++) f[i] = (i * 7 + seed * 13) & 0xff;
  return f;
}

interface HeaderFields {
  flags?: number;
  gsoType?: number;
  gsoSize?: number;
  csumStart?: number;
  csumOffset?: number;
  numBuffers?: number;
}

function txHeader(fields: HeaderFields = {}): Uint8Array {
  const h = new Uint8Array(VIRTIO_NET_HDR_LEN);
  const v = new DataView(h.buffer);
  h[0] = fields.flags ?? 0;
  h[1] = fields.gsoType ?? 0;
  v.setUint16(4, fields.gsoSize ?? 0, true);
  v.setUint16(6, fields.csumStart ?? 0, true);
  v.setUint16(8, fields.csumOffset ?? 0, true);
  v.setUint16(10, fields.numBuffers ?? 0, true);
  return h;
}

/** A TCPv4 super-segment with `payload` bytes of data and the checksum field left partial, as Linux's TSO sends. */
function tsoFrame(payload: number): Uint8Array {
  const data = frame(payload, 3);
  const f = buildTcpFrame(0x525400000002, 0x525400123456, 0x0a000210, 0x0a000202, {
    srcPort: 40000,
    dstPort: 5001,
    seq: 1000,
    ack: 1,
    flags: 0x18,
    window: 500,
    payload: data,
  });
  const partial = ~foldChecksum(pseudoHeaderSum(0x0a000210, 0x0a000202, 6, f.length - 34)) & 0xffff;
  f[34 + 16] = partial >>> 8;
  f[34 + 17] = partial & 0xff;
  return f;
}
const TSO = {
  flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
  gsoType: VIRTIO_NET_HDR_GSO_TCPV4,
  gsoSize: 1448,
  csumStart: 34,
  csumOffset: 16,
};

const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** The bytes the device wrote into one used receive buffer. */
const usedBytes = (u: UsedEntry): Uint8Array => concat(...u.written).subarray(0, u.len);

function setup(options: VirtioNetOptions = {}, accept = ALL, ramMiB = 32) {
  const ram = new GuestRam(ramMiB * MiB);
  const mock = new VirtioDriverMock(ram, ram.base, ram.base + ram.size);
  const sent: Uint8Array[] = [];
  let batches = 0;
  const dev = new VirtioNet(
    { ram, irq: mock.irq, name: 'net0' },
    { mac: MAC, onTransmit: (f) => sent.push(f), onTransmitBatchEnd: () => batches++, ...options },
  );
  mock.attach(dev).init(2, accept, 256);
  return { ram, mock, dev, sent, batches: () => batches };
}

function sendFrame(mock: VirtioDriverMock, f: Uint8Array, hdr = txHeader()): void {
  mock.post(TX, [hdr, f], []);
}

test('virtio-net: device id 1, offered features, configuration space (MAC, link, pairs, MTU), link changes', () => {
  const { mock, dev } = setup();
  assert.equal(mock.r(VIRTIO_MMIO_DEVICE_ID), 1);
  const offered = mock.deviceFeatures();
  for (const f of [VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU])
    assert.ok(hasFeature(offered, f));
  for (const f of [VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC]) assert.ok(hasFeature(offered, f));
  const expectedFeatures =
    OFFLOAD_FEATURES |
    bit(VIRTIO_NET_F_MAC) |
    bit(VIRTIO_NET_F_STATUS) |
    bit(VIRTIO_NET_F_MRG_RXBUF) |
    bit(VIRTIO_NET_F_MTU) |
    bit(VIRTIO_F_VERSION_1) |
    bit(VIRTIO_F_EVENT_IDX) |
    bit(VIRTIO_F_INDIRECT_DESC);
  assert.equal(offered, expectedFeatures);
  assert.equal(dev.negotiatedFeatures, expectedFeatures);
  assert.ok(dev.mergeableRxBuffers);
  assert.deepEqual({ ...dev.negotiatedOffloads }, { txChecksum: true, txGso: true, rxChecksum: true, rxGso: true });
  const off = setup({ offload: false });
  assert.ok(!hasFeature(off.mock.deviceFeatures(), VIRTIO_NET_F_CSUM), 'offload=off offers no offload');
  assert.equal(off.mock.deviceFeatures() & OFFLOAD_FEATURES, 0n);
  const mac = [0, 1, 2, 3, 4, 5].map((i) => mock.config8(i));
  assert.deepEqual(mac, [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
  const cfg16 = (o: number) => mock.dev.read(0x100 + o, 2);
  assert.equal(cfg16(6), 1, 'status: VIRTIO_NET_S_LINK_UP');
  assert.equal(cfg16(8), 1, 'max_virtqueue_pairs');
  assert.equal(cfg16(10), 1500, 'mtu');
  for (const q of [RX, TX]) {
    mock.w(VIRTIO_MMIO_QUEUE_SEL, q);
    assert.equal(mock.r(VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
  }
  const generation = mock.r(VIRTIO_MMIO_CONFIG_GENERATION);
  dev.setLinkUp(false);
  assert.equal(cfg16(6), 0);
  assert.ok(mock.ackInterrupt() & VIRTIO_MMIO_INT_CONFIG, 'a configuration interrupt');
  assert.notEqual(mock.r(VIRTIO_MMIO_CONFIG_GENERATION), generation);
  assert.ok(!dev.linkUp);
  dev.setLinkUp(true);
  assert.equal(cfg16(6), 1);
  assert.equal(dev.metrics().linkUp, 1);
});

test('virtio-net: MAC parsing and generation', () => {
  assert.deepEqual(parseMac('52:54:00:AB:cd:ef'), Uint8Array.of(0x52, 0x54, 0, 0xab, 0xcd, 0xef));
  for (const bad of ['', '52:54:00:ab:cd', '52-54-00-ab-cd-ef', '01:00:5e:00:00:01', 'zz:54:00:ab:cd:ef', '52:54:00:ab:cd:ef:00'])
    assert.equal(parseMac(bad), null, bad);
  const r = randomMac();
  assert.match(r, /^52:54:00(:[0-9a-f]{2}){3}$/);
  assert.equal(formatMac(parseMac(r)!), r);
  const ram = new GuestRam(MiB);
  assert.throws(() => new VirtioNet({ ram, irq: { set() {} }, name: 'x' }, { mac: 'ff:ff:ff:ff:ff:ff' }), /unicast/);
});

test('virtio-net: transmit hands over the exact frame bytes (split, combined, indirect) and one batch end per kick', () => {
  const { mock, dev, sent, batches } = setup();
  const a = frame(60, 1);
  const b = frame(1514, 2);
  const c = frame(MAX_FRAME_BYTES, 3);
  sendFrame(mock, a); // header and frame in separate buffers
  mock.post(TX, [concat(txHeader(), b)], []); // one buffer, as Linux does with any_header_sg
  mock.post(TX, [txHeader().subarray(0, 5), concat(txHeader().subarray(5), c.subarray(0, 100)), c.subarray(100)], [], {
    indirect: true,
  });
  mock.kick(TX);
  assert.deepEqual(sent, [a, b, c]);
  assert.equal(batches(), 1, 'one batch end for the three chains of one notification');
  const used = mock.collect(TX);
  assert.equal(used.length, 3);
  assert.ok(used.every((u) => u.len === 0));
  const m = dev.metrics();
  assert.equal(m.txPackets, 3);
  assert.equal(m.txBytes, 60 + 1514 + 1518);
  assert.equal(m.txErrors, 0);
  // The frame is a copy: the guest reusing its buffer does not change what the backend holds.
  assert.equal(sent[0]!.buffer.byteLength, 60);
});

test('virtio-net: malformed transmit frames are dropped with a named error each; the device keeps working', () => {
  const { mock, dev, sent } = setup({ offload: false });
  const cases: [Uint8Array[], string][] = [
    [[txHeader({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM }), frame(60)], 'ChecksumNotNegotiated'],
    [[txHeader({ flags: 4 }), frame(60)], 'UnknownHeaderFlags'],
    [[txHeader({ gsoType: VIRTIO_NET_HDR_GSO_TCPV4 }), frame(60)], 'GsoNotNegotiated'],
    [[txHeader().subarray(0, 11)], 'HeaderTooShort'],
    [[txHeader(), frame(13)], 'FrameTooShort'],
    [[txHeader()], 'FrameTooShort'],
    [[txHeader(), frame(MAX_FRAME_BYTES + 1)], 'FrameTooLong'],
    [[txHeader(), frame(64 * 1024)], 'FrameTooLong'],
  ];
  for (const [out, kind] of cases) {
    mock.post(TX, out, []);
    mock.kick(TX);
    assert.equal(dev.lastTxError, kind);
  }
  assert.equal(sent.length, 0);
  assert.equal(mock.collect(TX).length, cases.length, 'every bad chain is returned to the guest');
  assert.equal(dev.metrics().txErrors, cases.length);
  assert.equal(dev.needsReset, false);
  // num_buffers on transmit is meaningless and ignored.
  sendFrame(mock, frame(100), txHeader({ numBuffers: 7 }));
  mock.kick(TX);
  assert.equal(sent.length, 1);
  assert.equal(dev.metrics().txPackets, 1);
});

test('virtio-net: a throwing backend or a down link drops transmitted frames (counted), the device keeps working', () => {
  let fail = true;
  const got: Uint8Array[] = [];
  const { mock, dev } = setup({
    onTransmit: (f) => {
      if (fail) throw new Error('backend bug');
      got.push(f);
    },
  });
  sendFrame(mock, frame(60));
  mock.kick(TX);
  assert.equal(dev.metrics().txDropped, 1);
  fail = false;
  dev.setLinkUp(false);
  sendFrame(mock, frame(60));
  mock.kick(TX);
  assert.equal(dev.metrics().txDropped, 2);
  dev.setLinkUp(true);
  sendFrame(mock, frame(60));
  mock.kick(TX);
  assert.equal(got.length, 1);
  assert.equal(dev.metrics().txPackets, 1);
  assert.equal(dev.needsReset, false);
});

test('virtio-net: receive without MRG_RXBUF: one buffer per frame, num_buffers 1; a frame too big for the buffer is dropped', () => {
  const { mock, dev } = setup({}, ALL & ~bit(VIRTIO_NET_F_MRG_RXBUF));
  assert.ok(!dev.mergeableRxBuffers);
  mock.post(RX, [], [VIRTIO_NET_HDR_LEN + 1518]);
  mock.kick(RX);
  const f = frame(1000, 5);
  assert.ok(dev.receive(f));
  let used = mock.collect(RX);
  assert.equal(used.length, 1);
  assert.equal(used[0]!.len, VIRTIO_NET_HDR_LEN + 1000);
  const bytes = usedBytes(used[0]!);
  assert.deepEqual(bytes.subarray(0, 10), new Uint8Array(10), 'no flags, no GSO');
  assert.equal(new DataView(bytes.buffer, bytes.byteOffset).getUint16(10, true), 1, 'num_buffers');
  assert.deepEqual(bytes.subarray(VIRTIO_NET_HDR_LEN), f);
  // A small buffer: a big frame cannot use it (dropped, counted); a small frame then can.
  mock.post(RX, [], [200]);
  mock.kick(RX);
  assert.ok(dev.receive(frame(1500)));
  assert.equal(dev.metrics().rxErrors, 1);
  assert.equal(mock.collect(RX).length, 0);
  const small = frame(100, 9);
  assert.ok(dev.receive(small));
  used = mock.collect(RX);
  assert.deepEqual(usedBytes(used[0]!).subarray(VIRTIO_NET_HDR_LEN), small);
  const m = dev.metrics();
  assert.equal(m.rxPackets, 2);
  assert.equal(m.rxBytes, 1100);
  // Host frames outside 14..1518 bytes are refused.
  assert.ok(!dev.receive(frame(13)));
  assert.ok(!dev.receive(frame(1519)));
  assert.equal(dev.metrics().rxErrors, 3);
});

test('virtio-net: receive with MRG_RXBUF spans buffers: num_buffers in the first header, one used entry per buffer', () => {
  const { mock, dev } = setup();
  for (let i = 0; i < 4; i++) mock.post(RX, [], [512]);
  mock.kick(RX);
  const f = frame(1514, 4);
  assert.ok(dev.receive(f));
  const used = mock.collect(RX);
  assert.equal(used.length, 3, '12 + 1514 = 1526 bytes need three 512-byte buffers');
  assert.deepEqual(
    used.map((u) => u.len),
    [512, 512, 502],
  );
  const first = usedBytes(used[0]!);
  assert.equal(new DataView(first.buffer, first.byteOffset).getUint16(10, true), 3);
  assert.deepEqual(concat(...used.map(usedBytes)).subarray(VIRTIO_NET_HDR_LEN), f);
  // A small frame fits the one buffer left: num_buffers 1.
  assert.ok(dev.receive(frame(60)));
  const [one] = mock.collect(RX);
  assert.equal(one!.len, 72);
  assert.equal(new DataView(usedBytes(one!).buffer).getUint16(10, true), 1);
  // A frame waits until enough buffers have arrived, then goes at once.
  mock.post(RX, [], [1000]);
  mock.kick(RX);
  assert.ok(dev.receive(frame(1500, 6)));
  assert.equal(dev.pendingRxFrames, 1);
  assert.equal(mock.collect(RX).length, 0);
  mock.post(RX, [], [1000]);
  mock.kick(RX);
  const two = mock.collect(RX);
  assert.equal(two.length, 2);
  assert.deepEqual(concat(...two.map(usedBytes)).subarray(VIRTIO_NET_HDR_LEN), frame(1500, 6));
  assert.equal(dev.metrics().rxPackets, 3);
});

test('virtio-net: a receive buffer smaller than the header is a protocol error (NEEDS_RESET), not a crash', () => {
  const { mock, dev } = setup();
  mock.post(RX, [], [8]);
  mock.kick(RX);
  assert.ok(dev.needsReset);
  assert.match(dev.lastProtocolError ?? '', /MalformedRequest/);
  assert.ok(dev.receive(frame(60)), 'the host side still accepts (and queues) frames');
});

test('virtio-net: frames wait in a bounded pending queue, beyond it they are dropped; delivered in order when buffers arrive', () => {
  const { mock, dev } = setup({ rxPendingFrames: 256 });
  let accepted = 0;
  for (let i = 0; i < 300; i++) if (dev.receive(frame(100, i))) accepted++;
  assert.equal(accepted, 256);
  assert.equal(dev.metrics().rxDropped, 44);
  assert.equal(dev.metrics().pendingRxFrames, 256);
  for (let i = 0; i < 10; i++) mock.post(RX, [], [2048]);
  mock.kick(RX);
  const used = mock.collect(RX);
  assert.equal(used.length, 10);
  used.forEach((u, i) => assert.deepEqual(usedBytes(u).subarray(VIRTIO_NET_HDR_LEN), frame(100, i)));
  assert.equal(dev.pendingRxFrames, 246);
  // Link down drops what waits; a reset (driver reload) too.
  dev.setLinkUp(false);
  assert.equal(dev.pendingRxFrames, 0);
  assert.ok(!dev.receive(frame(100)), 'link down: refused');
  assert.equal(dev.metrics().rxDropped, 44 + 246 + 1);
});

test('virtio-net: the pending queue is bounded in bytes too (TSO frames are up to 64 KiB); one frame always fits', () => {
  const { mock, dev } = setup({ rxPendingBytes: 5000 });
  let accepted = 0;
  for (let i = 0; i < 10; i++) if (dev.receive(frame(1500, i))) accepted++;
  assert.equal(accepted, 3, '3 x 1500 B fit under 5000 B, a 4th does not');
  assert.equal(dev.metrics().pendingRxBytes, 4500);
  assert.equal(dev.metrics().rxDropped, 7);
  assert.ok(dev.receive(frame(100, 99)), 'a small frame still fits beside them');
  for (let i = 0; i < 4; i++) mock.post(RX, [], [2048]);
  mock.kick(RX);
  assert.equal(mock.collect(RX).length, 4);
  assert.equal(dev.metrics().pendingRxBytes, 0, 'the byte count follows deliveries');
  const lone = setup({ rxPendingBytes: 1000 });
  assert.ok(lone.dev.receive(frame(1500)), 'an empty queue takes one frame larger than the bound');
  assert.ok(!lone.dev.receive(frame(60)));
});

/** Keeps the guest's transmit queue full of `size`-byte frames and runs fake time to `untilMs`. */
function pumpTx(env: ReturnType<typeof setup>, time: FakeTime, untilMs: number, size = 1514): void {
  const { mock } = env;
  const q = mock.queues[TX]!;
  while (time.now < untilMs) {
    mock.collect(TX);
    while (q.free.length >= 2) sendFrame(mock, frame(size));
    const before = env.dev.metrics().txPackets;
    mock.kick(TX);
    // Within the burst no timer is armed: go round again while frames move.
    if (time.pending === 0 && env.dev.metrics().txPackets > before) continue;
    if (!time.runNext(untilMs)) break;
  }
}

function txBytesBetween(log: { t: number; n: number }[], from: number, to: number): number {
  return log.filter((e) => e.t >= from && e.t < to).reduce((s, e) => s + e.n, 0);
}

test('virtio-net: tx limited to 2 MiB/s moves 2 MiB per simulated second (±2%), never drops, backpressures the guest', () => {
  const time = new FakeTime();
  const log: { t: number; n: number }[] = [];
  const env = setup(
    {
      ...time.options,
      onTransmit: (f) => log.push({ t: time.now, n: f.length }),
      rateLimits: { tx: { bytesPerSecond: 2 * MiB } },
    },
    ALL,
    64,
  );
  pumpTx(env, time, 5000);
  const burst = env.dev.rateLimits.tx!.burstBytes!;
  const moved = txBytesBetween(log, 0, 5000);
  const expected = 5 * 2 * MiB + burst;
  assert.ok(Math.abs(moved - expected) / expected < 0.02, `moved ${moved} in 5 s, expected ≈ ${expected}`);
  // Per second after the burst: each within 2%.
  for (let s = 1; s < 5; s++) {
    const perSecond = txBytesBetween(log, s * 1000, (s + 1) * 1000);
    assert.ok(Math.abs(perSecond - 2 * MiB) / (2 * MiB) < 0.02, `second ${s}: ${perSecond}`);
  }
  const m = env.dev.metrics();
  assert.equal(m.txDropped, 0);
  assert.equal(m.txErrors, 0);
  assert.ok(m.txThrottled >= 1);
  assert.ok(m.txThrottledMs > 4000, `throttled for ${m.txThrottledMs} ms`);
  assert.ok(m.txBacklog > 0, 'chains wait with the device (owned, not completed)');
  assert.equal(env.mock.queues[TX]!.free.length, 0, "the guest's queue is full: backpressure");
  // Removing the limit sends everything that waited, at once.
  const waiting = m.txBacklog;
  const before = env.dev.metrics().txPackets;
  env.dev.setRateLimits({ tx: null });
  assert.equal(env.dev.metrics().txPackets, before + waiting);
  assert.equal(env.dev.metrics().txBacklog, 0);
  assert.equal(time.pending, 0, 'no timer left behind');
});

test('virtio-net: tx limit changed live (1 → 4 MiB/s) takes effect at once; a packet rate limits small frames', () => {
  const time = new FakeTime();
  const log: { t: number; n: number }[] = [];
  const env = setup(
    { ...time.options, onTransmit: (f) => log.push({ t: time.now, n: f.length }), rateLimits: { tx: { bytesPerSecond: MiB } } },
    ALL,
    64,
  );
  pumpTx(env, time, 2000);
  env.dev.setRateLimits({ tx: { bytesPerSecond: 4 * MiB } });
  pumpTx(env, time, 4000);
  const slow = txBytesBetween(log, 1000, 2000);
  const fast = txBytesBetween(log, 3000, 4000);
  assert.ok(Math.abs(slow - MiB) / MiB < 0.02, `1 MiB/s phase: ${slow}`);
  assert.ok(Math.abs(fast - 4 * MiB) / (4 * MiB) < 0.02, `4 MiB/s phase: ${fast}`);
  // Packets per second: 100-byte frames at 500 packets/s.
  env.dev.setRateLimits({ tx: { packetsPerSecond: 500 } });
  const packetsBefore = log.length;
  const start = time.now;
  pumpTx(env, time, start + 2000, 100);
  const packets = log.slice(packetsBefore).filter((e) => e.t >= start + 1000 && e.t < start + 2000).length;
  assert.ok(Math.abs(packets - 500) <= 10, `${packets} packets in a second at 500/s`);
});

test('virtio-net: rx limited to 2 MiB/s delivers 2 MiB per simulated second (±2%); frames wait, none are dropped', () => {
  const time = new FakeTime();
  const env = setup({ ...time.options, rateLimits: { rx: { bytesPerSecond: 2 * MiB } } }, ALL, 64);
  const { mock, dev } = env;
  const q = mock.queues[RX]!;
  const rxBytesAt: number[] = [];
  let offered = 0;
  while (time.now < 5000) {
    mock.collect(RX);
    while (q.free.length > 0) mock.post(RX, [], [2048]);
    mock.kick(RX);
    while (dev.pendingRxFrames < 256) {
      assert.ok(dev.receive(frame(1514)));
      offered++;
    }
    const second = Math.floor(time.now / 1000);
    rxBytesAt[second] ??= dev.metrics().rxBytes;
    if (!time.runNext(5000)) break;
  }
  const total = dev.metrics().rxBytes;
  const expected = 5 * 2 * MiB + dev.rateLimits.rx!.burstBytes!;
  assert.ok(Math.abs(total - expected) / expected < 0.02, `delivered ${total}, expected ≈ ${expected}`);
  for (let s = 1; s < 4; s++) {
    const perSecond = rxBytesAt[s + 1]! - rxBytesAt[s]!;
    assert.ok(Math.abs(perSecond - 2 * MiB) / (2 * MiB) < 0.02, `second ${s}: ${perSecond}`);
  }
  const m = dev.metrics();
  assert.equal(m.rxDropped, 0);
  assert.equal(m.rxPackets + m.pendingRxFrames, offered);
  assert.ok(m.rxThrottled >= 1 && m.rxThrottledMs > 4000);
  // Lifting the limit delivers what waits as buffers allow.
  dev.setRateLimits({ rx: null });
  mock.collect(RX);
  while (q.free.length > 0) mock.post(RX, [], [2048]);
  mock.kick(RX);
  assert.equal(dev.pendingRxFrames, 0);
  assert.equal(time.pending, 0);
});

test('virtio-net: a NIC without limits never consults the clock (no limiter on its path)', () => {
  let clockReads = 0;
  const { mock, dev, sent } = setup({
    now: () => {
      clockReads++;
      return 0;
    },
  });
  for (let i = 0; i < 50; i++) sendFrame(mock, frame(1514, i));
  mock.kick(TX);
  for (let i = 0; i < 50; i++) mock.post(RX, [], [2048]);
  mock.kick(RX);
  for (let i = 0; i < 50; i++) dev.receive(frame(1514, i));
  assert.equal(sent.length, 50);
  assert.equal(mock.collect(RX).length, 50);
  assert.equal(clockReads, 0);
  // Invalid limits are refused with a named error and change nothing.
  assert.throws(
    () => dev.setRateLimits({ rx: { bytesPerSecond: 1e6 }, tx: { bytesPerSecond: -1 } }),
    (e: unknown) => e instanceof Error && e.name === 'InvalidRate',
  );
  assert.deepEqual(dev.rateLimits, { rx: null, tx: null });
  dev.setRateLimits({ tx: {} });
  assert.equal(dev.rateLimits.tx, null, 'a spec that limits nothing is no limiter');
});

test('virtio-net: saveState/loadState keeps MAC, link, pending frames and the guest buffers the device held', () => {
  const { mock, dev, ram } = setup({ mac: '52:54:00:aa:bb:cc' });
  mock.post(RX, [], [2048]);
  mock.kick(RX);
  dev.setLinkUp(false);
  dev.setLinkUp(true);
  mock.ackInterrupt();
  // Two frames wait: the first takes the one buffer, the second stays pending... take the buffer first.
  assert.ok(dev.receive(frame(300, 1)));
  mock.collect(RX);
  mock.post(RX, [], [1024]);
  mock.kick(RX);
  assert.ok(dev.receive(frame(1500, 2)), 'does not fit 1024 bytes: waits');
  assert.equal(dev.pendingRxFrames, 1);
  const state = structuredClone(dev.saveState());
  assert.equal(state.type, 'virtio-net');
  const sent: Uint8Array[] = [];
  const dev2 = new VirtioNet({ ram, irq: mock.irq, name: 'net0' }, { onTransmit: (f) => sent.push(f) });
  dev2.loadState(state);
  mock.attach(dev2);
  assert.equal(dev2.mac, '52:54:00:aa:bb:cc');
  assert.equal(mock.config8(5), 0xcc);
  assert.ok(dev2.linkUp && dev2.mergeableRxBuffers);
  assert.equal(dev2.pendingRxFrames, 1);
  assert.equal(dev2.metrics().rxBuffers, 1, 'the held buffer was re-submitted');
  mock.post(RX, [], [1024]);
  mock.kick(RX);
  const used = mock.collect(RX);
  assert.equal(used.length, 2);
  assert.deepEqual(concat(...used.map(usedBytes)).subarray(VIRTIO_NET_HDR_LEN), frame(1500, 2));
  sendFrame(mock, frame(64, 3));
  mock.kick(TX);
  assert.deepEqual(sent, [frame(64, 3)]);
  // A state of another type or a damaged one is refused.
  assert.throws(() => dev2.loadState({ ...state, type: 'virtio-blk' }));
  assert.throws(() => dev2.loadState({ ...state, data: { ...state.data, device: { ...state.data.device, mac: 'nope' } } }));
});

test('virtio-net: throttled transmit chains survive saveState/loadState and go out once tokens allow', () => {
  const time = new FakeTime();
  const env = setup({ ...time.options, rateLimits: { tx: { bytesPerSecond: 100_000, burstBytes: 3000 } } });
  for (let i = 0; i < 5; i++) sendFrame(env.mock, frame(1000, i));
  env.mock.kick(TX);
  assert.equal(env.sent.length, 3, 'the burst: three 1000-byte frames');
  assert.equal(env.dev.metrics().txBacklog, 2);
  const state = structuredClone(env.dev.saveState());
  env.dev.close();
  assert.equal(time.pending, 0, 'close cancels timers');
  const sent: Uint8Array[] = [];
  const dev2 = new VirtioNet(
    { ram: env.ram, irq: env.mock.irq, name: 'net0' },
    { ...time.options, onTransmit: (f) => sent.push(f), rateLimits: { tx: { bytesPerSecond: 100_000, burstBytes: 3000 } } },
  );
  dev2.loadState(state);
  env.mock.attach(dev2);
  assert.equal(sent.length, 2, 'the restored device starts with a full bucket');
  assert.deepEqual(sent, [frame(1000, 3), frame(1000, 4)]);
  assert.equal(env.mock.collect(TX).length, 5);
});

test('virtio-net: a driver reset drops what waits and releases held chains; close() stops everything', () => {
  const time = new FakeTime();
  const env = setup({ ...time.options, rateLimits: { tx: { bytesPerSecond: 1, burstBytes: 1518 } } });
  const { mock, dev, sent } = env;
  sendFrame(mock, frame(1000, 1));
  sendFrame(mock, frame(1000, 2));
  mock.kick(TX);
  assert.equal(sent.length, 1);
  assert.equal(dev.metrics().txBacklog, 1);
  // 1 B/s: the next 1000 bytes need 482 s; a timer waits at most a minute, then re-arms.
  assert.equal(time.pending, 1);
  assert.ok(time.runNext());
  assert.equal(time.now, 60_000);
  assert.equal(time.pending, 1);
  assert.equal(dev.metrics().txBacklog, 1);
  assert.ok(dev.receive(frame(100)));
  assert.equal(dev.pendingRxFrames, 1);
  // Driver reset (status 0) and a fresh init: nothing from before survives, the device works again.
  mock.init(2, ALL, 256);
  assert.equal(dev.pendingRxFrames, 0);
  assert.equal(dev.metrics().txBacklog, 0);
  assert.equal(time.pending, 0);
  assert.equal(dev.metrics().rxDropped, 1);
  dev.setRateLimits({ tx: null });
  sendFrame(mock, frame(200, 3));
  mock.kick(TX);
  assert.deepEqual(sent.at(-1), frame(200, 3));
  dev.close();
  assert.ok(!dev.receive(frame(100)), 'closed: host frames are dropped');
  assert.equal(dev.metrics().rxDropped, 2);
});

test('virtio-net: fuzzed transmit chains never throw and keep the counters consistent', () => {
  const { mock, dev, sent } = setup({}, ALL, 64);
  let chains = 0;
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          header: fc.oneof(fc.constant(txHeader()), fc.uint8Array({ minLength: 0, maxLength: 16 })),
          payload: fc.oneof(fc.integer({ min: 0, max: 1600 }), fc.constantFrom(13, 14, 1518, 1519, 9000)),
          splits: fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 4 }),
          indirect: fc.boolean(),
        }),
        { minLength: 1, maxLength: 20 },
      ),
      (batch) => {
        for (const c of batch) {
          const bytes = concat(c.header, frame(c.payload, c.payload));
          const parts: Uint8Array[] = [];
          let at = 0;
          for (const s of c.splits) {
            if (at >= bytes.length) break;
            parts.push(bytes.subarray(at, at + s));
            at += s;
          }
          if (at < bytes.length || parts.length === 0) parts.push(bytes.subarray(at));
          mock.post(TX, parts, [], { indirect: c.indirect });
          chains++;
        }
        mock.kick(TX);
        mock.collect(TX);
        const m = dev.metrics();
        assert.equal(m.txPackets + m.txErrors + m.txDropped, chains);
        assert.equal(m.txPackets, sent.length);
        assert.equal(
          m.txBytes,
          sent.reduce((n, f) => n + f.length, 0),
        );
        assert.ok(sent.every((f) => f.length >= 14 && f.length <= MAX_FRAME_BYTES));
        assert.equal(dev.needsReset, false);
      },
    ),
    { numRuns: 150 },
  );
});

test('virtio-net: fuzzed receive buffers and frames (with and without MRG_RXBUF) reassemble exactly, in order', () => {
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.array(fc.integer({ min: VIRTIO_NET_HDR_LEN, max: 3000 }), { minLength: 1, maxLength: 60 }),
      fc.array(fc.integer({ min: 14, max: MAX_FRAME_BYTES }), { minLength: 1, maxLength: 40 }),
      (mergeable, bufferSizes, frameSizes) => {
        const { mock, dev } = setup({}, mergeable ? ALL : ALL & ~bit(VIRTIO_NET_F_MRG_RXBUF), 16);
        const frames = frameSizes.map((n, i) => frame(n, i));
        // Interleave: half the buffers first, the frames, then the rest of the buffers.
        const half = Math.ceil(bufferSizes.length / 2);
        for (const n of bufferSizes.slice(0, half)) mock.post(RX, [], [n]);
        mock.kick(RX);
        for (const f of frames) assert.ok(dev.receive(f));
        for (const n of bufferSizes.slice(half)) mock.post(RX, [], [n]);
        mock.kick(RX);
        const used = mock.collect(RX);
        const delivered: Uint8Array[] = [];
        for (let i = 0; i < used.length;) {
          const first = usedBytes(used[i]!);
          const count = new DataView(first.buffer, first.byteOffset).getUint16(10, true);
          assert.ok(count >= 1 && i + count <= used.length, `num_buffers ${count} at entry ${i} of ${used.length}`);
          if (!mergeable) assert.equal(count, 1);
          delivered.push(concat(...used.slice(i, i + count).map(usedBytes)).subarray(VIRTIO_NET_HDR_LEN));
          i += count;
        }
        const m = dev.metrics();
        assert.equal(delivered.length, m.rxPackets);
        assert.equal(m.rxPackets + m.rxErrors + m.pendingRxFrames, frames.length);
        assert.equal(
          m.rxBytes,
          delivered.reduce((n, f) => n + f.length, 0),
        );
        // Delivered frames are the offered ones, in order (skipping those dropped as too big for their buffer).
        let at = 0;
        for (const d of delivered) {
          while (at < frames.length && frames[at]!.length !== d.length) at++;
          assert.ok(at < frames.length, 'a delivered frame that was never offered');
          assert.deepEqual(d, frames[at]);
          at++;
        }
        if (mergeable) assert.equal(m.rxErrors, 0, 'with MRG_RXBUF nothing is too big');
        assert.equal(dev.needsReset, false);
      },
    ),
    { numRuns: 100 },
  );
});

test('virtio-net offloads: a TSO super-segment goes out whole with its metadata; hostile offload headers are refused by name', () => {
  const got: [Uint8Array, FrameOffload | undefined][] = [];
  const { mock, dev } = setup({ onTransmit: (f, o) => got.push([f, o]) });
  const big = tsoFrame(30000);
  sendFrame(mock, big, txHeader(TSO));
  sendFrame(mock, frame(60), txHeader());
  mock.kick(TX);
  assert.equal(dev.lastTxError, null);
  assert.equal(got.length, 2);
  assert.deepEqual(got[0]![0], big);
  assert.deepEqual(got[0]![1], { flags: 1, gsoType: 1, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
  assert.equal(got[1]![1], undefined, 'a frame without offload carries no metadata');
  const cases: [Uint8Array, Uint8Array, string][] = [
    [txHeader({ ...TSO, gsoType: 3 }), big, 'UnsupportedGsoType'],
    [txHeader({ ...TSO, gsoType: 0x81 }), big, 'UnsupportedGsoType'],
    [txHeader({ ...TSO, gsoSize: 0 }), big, 'OffloadBadGsoSize'],
    [txHeader({ ...TSO, flags: 0 }), big, 'OffloadGsoWithoutChecksum'],
    [txHeader({ ...TSO, csumStart: 0xffff }), big, 'OffloadChecksumOutsideFrame'],
    [txHeader({ ...TSO, csumOffset: 6 }), big, 'OffloadGsoChecksumMismatch'],
    [txHeader(TSO), frame(3000), 'OffloadGsoNotTcp4'],
    [txHeader({ flags: 1, csumStart: 34, csumOffset: 16 }), big, 'FrameTooLong'],
    [txHeader(TSO), frame(14 + 65536), 'FrameTooLong'],
    [txHeader({ flags: 2 }), frame(60), 'UnknownHeaderFlags'],
  ];
  for (const [h, f, kind] of cases) {
    sendFrame(mock, f, h);
    mock.kick(TX);
    assert.equal(dev.lastTxError, kind);
  }
  assert.equal(got.length, 2);
  assert.equal(dev.metrics().txErrors, cases.length);
  assert.equal(dev.needsReset, false);
});

test('virtio-net offloads: a super-segment for a driver with GUEST_TSO4 arrives whole with its header; without, segmented in software', () => {
  const big = tsoFrame(20000);
  const meta: FrameOffload = { flags: 1, gsoType: 1, gsoSize: 1448, csumStart: 34, csumOffset: 16 };
  const on = setup();
  for (let i = 0; i < 24; i++) on.mock.post(RX, [], [4096]);
  on.mock.kick(RX);
  assert.ok(on.dev.receive(big, meta));
  const used = on.mock.collect(RX);
  const bytes = concat(...used.map(usedBytes));
  const h = new DataView(bytes.buffer, bytes.byteOffset);
  assert.deepEqual(
    [h.getUint8(0), h.getUint8(1), h.getUint16(4, true), h.getUint16(6, true), h.getUint16(8, true)],
    [1, 1, 1448, 34, 16],
  );
  assert.equal(h.getUint16(10, true), used.length);
  assert.deepEqual(bytes.subarray(VIRTIO_NET_HDR_LEN), big);

  const off = setup({ offload: false });
  for (let i = 0; i < 20; i++) off.mock.post(RX, [], [2048]);
  off.mock.kick(RX);
  assert.ok(off.dev.receive(big, meta));
  const segs = off.mock.collect(RX).map(usedBytes);
  assert.equal(segs.length, Math.ceil(20000 / 1448));
  let total = 0;
  for (const s of segs) {
    assert.deepEqual(s.subarray(0, 10), new Uint8Array(10), 'plain header');
    const f = s.subarray(VIRTIO_NET_HDR_LEN);
    const tcp = parseTcp(f, parseIpv4(f, 14) as never);
    assert.equal(typeof tcp, 'object', 'checksums complete');
    total += (tcp as { payload: Uint8Array }).payload.length;
  }
  assert.equal(total, 20000);
  assert.ok(!off.dev.receive(big, { ...meta, csumOffset: 4 }), 'bad metadata from the network is dropped');
  assert.equal(off.dev.metrics().rxErrors, 1);
});

test('virtio-net offloads: a pending super-segment keeps its metadata across saveState/loadState; bad metadata in state is refused', () => {
  const { mock, dev, ram } = setup();
  const big = tsoFrame(8000);
  const meta: FrameOffload = { flags: 1, gsoType: 1, gsoSize: 1448, csumStart: 34, csumOffset: 16 };
  assert.ok(dev.receive(frame(100, 1)));
  assert.ok(dev.receive(big, meta));
  assert.equal(dev.pendingRxFrames, 2, 'no receive buffers yet');
  const state = structuredClone(dev.saveState());
  const dev2 = new VirtioNet({ ram, irq: mock.irq, name: 'net0' }, {});
  dev2.loadState(state);
  mock.attach(dev2);
  assert.ok(dev2.negotiatedOffloads.rxGso, 'negotiated offloads come back with the features');
  for (let i = 0; i < 4; i++) mock.post(RX, [], [4096]);
  mock.kick(RX);
  const used = mock.collect(RX);
  const first = usedBytes(used[0]!);
  assert.deepEqual(first.subarray(0, 10), new Uint8Array(10), 'the plain frame: plain header');
  const rest = concat(...used.slice(1).map(usedBytes));
  const h = new DataView(rest.buffer, rest.byteOffset);
  assert.deepEqual([h.getUint8(0), h.getUint8(1), h.getUint16(4, true)], [1, 1, 1448]);
  assert.deepEqual(rest.subarray(VIRTIO_NET_HDR_LEN), big);
  const device = state.data.device as { pendingRxOffload: unknown[] };
  for (const bad of [[null], [null, { ...meta, csumOffset: 4 }], [null, { flags: 'x' }]]) {
    const tampered = structuredClone(state);
    (tampered.data.device as { pendingRxOffload: unknown[] }).pendingRxOffload = bad;
    assert.throws(() => new VirtioNet({ ram, irq: mock.irq, name: 'net1' }, {}).loadState(tampered), JSON.stringify(bad));
  }
  assert.equal(device.pendingRxOffload.length, 2);
});
