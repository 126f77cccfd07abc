import { test } from 'node:test';
import assert from 'node:assert/strict';
import { L2Switch } from '../../src/net/switch.js';
import { BROADCAST_MAC, ETHERTYPE_IPV4, writeEthernetHeader, type Mac } from '../../src/net/packet/ethernet.js';

function frame(dst: Mac, src: Mac, len = 60): Uint8Array {
  const f = new Uint8Array(len);
  writeEthernetHeader(f, dst, src, ETHERTYPE_IPV4);
  return f;
}

function rig(opts: { macTableSize?: number; agingMs?: number } = {}) {
  let now = 0;
  const sw = new L2Switch({ ...opts, now: () => now });
  const inbox: Record<string, Uint8Array[]> = { a: [], b: [], c: [] };
  const a = sw.attach('a', (f) => inbox.a.push(f), { fixedMac: 0x525400000001 });
  const b = sw.attach('b', (f) => inbox.b.push(f), { fixedMac: 0x525400000002 });
  const c = sw.attach('c', (f) => inbox.c.push(f));
  return { sw, inbox, a, b, c, advance: (ms: number) => (now += ms) };
}

test('switch: floods unknown unicast and broadcast, then forwards to the learned port only', () => {
  const { sw, inbox, a, b } = rig();
  sw.receive(a, frame(0x525400000002, 0x525400000001));
  assert.equal(inbox.b.length, 1);
  assert.equal(inbox.c.length, 1, 'unknown unicast floods');
  assert.equal(inbox.a.length, 0, 'never back to the ingress');
  sw.receive(b, frame(0x525400000001, 0x525400000002));
  assert.equal(inbox.a.length, 1);
  assert.equal(inbox.c.length, 1, 'a is learned: c does not see the reply');
  sw.receive(a, frame(BROADCAST_MAC, 0x525400000001));
  assert.equal(inbox.b.length, 2);
  assert.equal(inbox.c.length, 2);
  sw.receive(a, frame(0x01005e000001, 0x525400000001));
  assert.equal(inbox.c.length, 3, 'multicast floods');
  assert.equal(a.counters.rxFrames, 3);
  assert.equal(a.counters.rxBytes, 180);
  assert.equal(b.counters.txFrames, 3);
  assert.equal(a.counters.txFrames, 1);
});

test('switch: anti-spoofing drops frames whose source is not the port MAC, and multicast sources', () => {
  const { sw, inbox, a, c } = rig();
  sw.receive(a, frame(BROADCAST_MAC, 0x525400000002));
  assert.equal(inbox.b.length + inbox.c.length, 0);
  assert.equal(a.counters.spoofDropped, 1);
  assert.equal(a.counters.rxDropped, 1);
  sw.receive(c, frame(BROADCAST_MAC, 0xffffffffffff));
  assert.equal(c.counters.spoofDropped, 1);
  // The spoofed frame did not teach the switch that b lives on a.
  sw.receive(c, frame(0x525400000002, 0x525400000099));
  assert.equal(inbox.b.length, 1);
  assert.equal(inbox.a.length, 1, 'still unknown: floods');
});

test('switch: runt and oversize frames are dropped and counted', () => {
  const { sw, a } = rig();
  sw.receive(a, new Uint8Array(10));
  sw.receive(a, frame(BROADCAST_MAC, 0x525400000001, 1515));
  assert.equal(a.counters.rxFrames, 2);
  assert.equal(a.counters.rxDropped, 2);
});

test('switch: the MAC table is bounded and entries age out', () => {
  const { sw, inbox, c, advance } = rig({ macTableSize: 16, agingMs: 1000 });
  for (let i = 0; i < 10_000; i++) sw.receive(c, frame(BROADCAST_MAC, 0x020000000000 + i));
  assert.ok(sw.macTableSize() <= 16);
  assert.equal(inbox.a.length, 10_000);
  // The most recent source is learned; frames to it no longer flood to a.
  sw.receive(sw.portList()[0], frame(0x020000000000 + 9999, 0x525400000001));
  assert.equal(inbox.c.length, 1);
  assert.equal(inbox.b.length, 10_000);
  advance(2000);
  sw.sweep();
  assert.equal(sw.macTableSize(), 0);
});

test('switch: detach forgets the port and its addresses', () => {
  const { sw, inbox, a, b } = rig();
  sw.receive(b, frame(BROADCAST_MAC, 0x525400000002));
  sw.detach(b);
  sw.receive(a, frame(0x525400000002, 0x525400000001));
  assert.equal(inbox.b.length, 0);
  assert.equal(inbox.c.length, 2);
  sw.receive(b, frame(BROADCAST_MAC, 0x525400000002));
  assert.equal(b.counters.rxFrames, 1, 'a detached port takes nothing');
});
