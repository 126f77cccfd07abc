import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { makeNetwork, ip } from './rig.js';
import { FakeSockets } from './fake-sockets.js';
import { buildUdpFrame } from '../../src/net/packet/udp.js';
import { buildTcpFrame } from '../../src/net/packet/tcp.js';
import { buildArpFrame } from '../../src/net/packet/arp.js';
import { buildIcmpEchoFrame } from '../../src/net/packet/icmp.js';
import { buildDhcpRequest } from '../../src/net/dhcp.js';
import { buildDnsQuery } from '../../src/net/dns.js';
import { parseMac, BROADCAST_MAC } from '../../src/net/packet/ethernet.js';
import type { VirtualNetwork } from '../../src/net/network.js';

const GW_MAC = parseMac('52:55:0a:00:02:02');
const MACS = ['52:54:00:00:00:01', '52:54:00:00:00:02'].map(parseMac);

/** Valid frames of every kind the gateway handles, from random fields. */
function structuredFrame(): fc.Arbitrary<Uint8Array> {
  const src = fc.constantFrom(MACS[0], MACS[0], MACS[1]);
  const dstMac = fc.constantFrom(GW_MAC, BROADCAST_MAC, MACS[1], 0x020000000001);
  const anyIp = fc.oneof(
    fc.constantFrom(ip('10.0.2.2'), ip('10.0.2.3'), ip('10.0.2.15'), 0xffffffff, 0, ip('127.0.0.1'), ip('224.0.0.1')),
    fc.integer({ min: 0, max: 0xffffffff }),
  );
  const port = fc.oneof(fc.constantFrom(53, 67, 68, 80, 0), fc.integer({ min: 0, max: 65535 }));
  const payload = fc.uint8Array({ maxLength: 600 });
  return fc.oneof(
    fc
      .tuple(dstMac, src, anyIp, anyIp, port, port, payload)
      .map(([dm, sm, s, d, sp, dp, p]) => buildUdpFrame(dm, sm, s, d, sp, dp, p)),
    fc
      .tuple(
        dstMac,
        src,
        anyIp,
        anyIp,
        port,
        port,
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        payload,
      )
      .map(([dm, sm, s, d, sp, dp, flags, seq, ack, p]) =>
        buildTcpFrame(dm, sm, s, d, {
          srcPort: sp,
          dstPort: dp,
          seq,
          ack,
          flags,
          window: 1000,
          mss: 1460,
          payload: p.subarray(0, 200),
        }),
      ),
    fc
      .tuple(fc.integer({ min: 0, max: 3 }), src, anyIp, anyIp, dstMac)
      .map(([op, sm, s, t, dm]) => buildArpFrame(op, sm, s, 0, t, dm)),
    fc
      .tuple(dstMac, src, anyIp, anyIp, fc.integer({ min: 0, max: 255 }), payload)
      .map(([dm, sm, s, d, type, p]) => buildIcmpEchoFrame(dm, sm, s, d, type, 1, 1, p)),
    fc
      .tuple(src, fc.integer({ min: 0, max: 10 }), anyIp, anyIp, fc.boolean())
      .map(([sm, type, req, sid, own]) =>
        buildUdpFrame(
          BROADCAST_MAC,
          sm,
          0,
          0xffffffff,
          68,
          67,
          buildDhcpRequest({ messageType: type, xid: 5, chaddr: own ? sm : 0x525400000077, requestedIp: req, serverId: sid }),
        ),
      ),
    fc
      .tuple(src, fc.string({ maxLength: 80 }), fc.integer({ min: 0, max: 300 }))
      .map(([sm, name, type]) =>
        buildUdpFrame(GW_MAC, sm, ip('10.0.2.15'), ip('10.0.2.3'), 999, 53, buildDnsQuery(1, name, type)),
      ),
  );
}

/** Valid frames with bytes flipped, truncated or extended. */
function mutatedFrame(): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(
      structuredFrame(),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      fc.integer({ min: -40, max: 40 }),
    )
    .map(([f, flips, resize]) => {
      const out = new Uint8Array(Math.max(0, f.length + resize));
      out.set(f.subarray(0, out.length));
      for (const [at, v] of flips) if (out.length) out[at % out.length] = v;
      return out;
    });
}

function run(net: VirtualNetwork, frames: fc.Arbitrary<Uint8Array>, numRuns: number) {
  const delivered = new Map<string, number>();
  const fed = new Map<string, number>();
  const nics = ['a', 'b'].map((id, i) => ({
    id,
    nic: net.attach(id, { mac: `52:54:00:00:00:0${i + 1}`, hostname: id }, () => delivered.set(id, (delivered.get(id) ?? 0) + 1)),
  }));
  fc.assert(
    fc.property(fc.nat(1), frames, (who, frame) => {
      const { id, nic } = nics[who];
      fed.set(id, (fed.get(id) ?? 0) + 1);
      nic.receive(frame);
    }),
    { numRuns },
  );
  const s = net.stats();
  for (const { id } of nics) {
    const p = s.ports.find((p) => p.id === id)!;
    assert.equal(p.rxFrames, fed.get(id) ?? 0, `port ${id} counted every frame it sent`);
    assert.equal(p.txFrames, delivered.get(id) ?? 0, `port ${id} counted every frame it got`);
    assert.ok(p.rxDropped <= p.rxFrames && p.spoofDropped <= p.rxDropped);
  }
  const gw = s.ports.find((p) => p.id === 'gateway')!;
  assert.equal(gw.txFrames, s.gateway.rxFrames, 'every frame switched to the gateway reached it');
  assert.equal(gw.rxDropped, 0, 'the gateway never emits a malformed frame');
  const errors = Object.values(s.gateway.errors).reduce((a, b) => a + b, 0);
  assert.ok(errors > 0, 'malformed frames were seen and named');
  return s;
}

test('hostile: 20 000 random, mutated and structured frames never throw and keep counters consistent (nat)', () => {
  const sockets = new FakeSockets();
  const { net, clock } = makeNetwork({ sockets, resolver: { lookupA: async () => 'NXDOMAIN' } });
  const s = run(net, fc.oneof(fc.uint8Array({ maxLength: 1600 }), mutatedFrame(), structuredFrame()), 20_000);
  assert.ok(s.udpNat!.flows <= 512, 'the UDP flow table stays bounded');
  assert.ok(s.tcpNat.pending <= 128, 'host connects in flight stay bounded');
  assert.ok(s.macTable.size <= 3);
  clock.advance(120_000);
  const after = net.stats();
  assert.equal(after.udpNat!.flows, 0, 'idle flows are swept');
  assert.equal(after.tcpNat.pending, 0, 'connects that never completed timed out');
  assert.equal(sockets.udpOpened, sockets.udpClosed);
  assert.ok(
    sockets.tcpConnects.every((c) => c.destroyed),
    'every host socket of a failed connect was destroyed',
  );
  net.close();
});

test('hostile: the same storm at an isolated network opens no host socket', () => {
  const { net } = makeNetwork({ mode: 'isolated' });
  run(net, fc.oneof(fc.uint8Array({ maxLength: 1600 }), mutatedFrame(), structuredFrame()), 20_000);
  net.close();
});

function synFrom(srcPort: number, dst = ip('93.184.216.34'), dstPort = 80): Uint8Array {
  return buildTcpFrame(GW_MAC, MACS[0], ip('10.0.2.15'), dst, {
    srcPort,
    dstPort,
    seq: srcPort * 1000,
    ack: 0,
    flags: 0x02,
    window: 65535,
    mss: 1460,
    payload: new Uint8Array(0),
  });
}

test('hostile: a SYN flood stays within the pending-connect limit; the rest get RST', () => {
  const sockets = new FakeSockets();
  const { net, clock } = makeNetwork({ sockets });
  let rsts = 0;
  const nic = net.attach('a', { mac: '52:54:00:00:00:01' }, (f) => {
    if (f.length >= 54 && f[23] === 6 && f[47] & 0x04) rsts++;
  });
  for (let i = 0; i < 1000; i++) nic.receive(synFrom(10000 + i));
  let s = net.stats().tcpNat;
  assert.equal(s.pending, 128);
  assert.equal(s.connectsStarted, 128);
  assert.equal(s.refusedPendingLimit, 872);
  assert.equal(sockets.tcpConnects.length, 128, 'no host socket beyond the limit');
  assert.equal(rsts, 872);
  // A retransmitted SYN for a pending connection is not a new connection.
  nic.receive(synFrom(10000));
  assert.equal(net.stats().tcpNat.connectsStarted, 128);
  clock.advance(30_000);
  s = net.stats().tcpNat;
  assert.equal(s.pending, 0);
  assert.equal(s.connectsFailed, 128);
  assert.equal(s.connections, 0);
  assert.equal(rsts, 872 + 128, 'each timed-out connect was refused with RST');
  net.close();
});

test('hostile: connections per guest address, and per network, are bounded', async () => {
  const sockets = new FakeSockets(true);
  const { net } = makeNetwork({ sockets, limits: { maxTcpPerGuest: 20, maxTcpTotal: 25 } });
  const nic = net.attach('a', { mac: '52:54:00:00:00:01' }, () => {});
  const nic2 = net.attach('b', { mac: '52:54:00:00:00:02' }, () => {});
  for (let i = 0; i < 50; i++) {
    nic.receive(synFrom(20000 + i));
    await new Promise((r) => setImmediate(r));
  }
  let s = net.stats().tcpNat;
  assert.equal(s.connections, 20);
  assert.equal(s.connectsSucceeded, 20);
  assert.equal(s.refusedGuestLimit, 30);
  for (let i = 0; i < 10; i++) {
    nic2.receive(
      buildTcpFrame(GW_MAC, MACS[1], ip('10.0.2.16'), ip('93.184.216.34'), {
        srcPort: 30000 + i,
        dstPort: 80,
        seq: 1,
        ack: 0,
        flags: 0x02,
        window: 65535,
        payload: new Uint8Array(0),
      }),
    );
    await new Promise((r) => setImmediate(r));
  }
  s = net.stats().tcpNat;
  assert.equal(s.connections, 25, 'the second guest got what the network cap left');
  assert.equal(s.refusedGuestLimit, 35);
  net.close();
  assert.equal(net.stats().tcpNat.connections, 0, 'close aborts every connection');
  assert.ok(sockets.tcpConnects.every((c) => c.destroyed));
});
