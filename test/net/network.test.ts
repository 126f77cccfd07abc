import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestGuest } from './guest.js';
import { makeNetwork, ip } from './rig.js';
import { buildUdpFrame } from '../../src/net/packet/udp.js';
import { buildArpFrame, ARP_REQUEST } from '../../src/net/packet/arp.js';
import { buildIcmpEchoFrame } from '../../src/net/packet/icmp.js';
import { BROADCAST_MAC, formatMac } from '../../src/net/packet/ethernet.js';
import { NetworkError } from '../../src/net/network.js';
import { buildTcpFrame } from '../../src/net/packet/tcp.js';
import { TCP_RST, TCP_SYN } from '../../src/net/tcp/types.js';

test('gateway: ARP and ping for the gateway and DNS addresses, nothing for others', () => {
  const { net } = makeNetwork();
  const g = new TestGuest(net, 'a', '52:54:00:00:00:01');
  g.dhcp();
  const gwMac = g.arp(ip('10.0.2.2'));
  assert.equal(formatMac(gwMac!), '52:55:0a:00:02:02');
  assert.equal(g.arp(ip('10.0.2.3')), gwMac);
  assert.equal(g.arp(ip('10.0.2.99')), undefined);
  g.gatewayMac = gwMac!;
  const reply = g.ping(ip('10.0.2.2'), 7, Uint8Array.from([9, 8, 7]));
  assert.deepEqual(Array.from(reply!.icmp!.data), [9, 8, 7]);
  assert.equal(reply!.icmp!.id, 0x77);
  assert.ok(g.ping(ip('10.0.2.3'), 8));
  assert.equal(g.ping(ip('8.8.8.8'), 9), undefined, 'no ICMP NAT');
  const s = net.stats().gateway;
  assert.equal(s.arpReplies, 2);
  assert.equal(s.icmpEchoReplies, 2);
});

test('switch: two guests on one network exchange frames; guests on another network never see them', () => {
  const one = makeNetwork().net;
  const two = makeNetwork({ name: 'two' }).net;
  const a = new TestGuest(one, 'a', '52:54:00:00:00:01');
  const b = new TestGuest(one, 'b', '52:54:00:00:00:02');
  const c = new TestGuest(two, 'c', '52:54:00:00:00:03');
  // The same MAC on another network is a different station.
  const d = new TestGuest(two, 'd', '52:54:00:00:00:02');
  for (const g of [a, b, c, d]) g.dhcp();
  for (const g of [a, b, c, d]) g.inbox.length = 0;
  assert.equal(a.arp(b.ip), b.mac, 'ARP between guests passes through the switch');
  b.inbox.length = 0;
  a.sendUdp(b.ip, 1000, 2000, Uint8Array.from([42]), b.mac);
  const got = b.take((r) => r.udp?.dstPort === 2000);
  assert.deepEqual(Array.from(got!.udp!.payload), [42]);
  a.send(buildUdpFrame(BROADCAST_MAC, a.mac, a.ip, 0xffffffff, 1, 9, Uint8Array.from([1])));
  assert.ok(b.take((r) => r.udp?.dstPort === 9));
  assert.equal(c.inbox.length + d.inbox.length, 0);
  const s = one.stats();
  const portA = s.ports.find((p) => p.id === 'a')!;
  const portB = s.ports.find((p) => p.id === 'b')!;
  assert.ok(portA.rxFrames >= 3);
  assert.ok(portB.txFrames >= 3);
});

test('network: a NIC cannot send as another (anti-spoofing) nor attach twice', () => {
  const { net } = makeNetwork();
  const a = new TestGuest(net, 'a', '52:54:00:00:00:01');
  const b = new TestGuest(net, 'b', '52:54:00:00:00:02');
  b.dhcp();
  b.inbox.length = 0;
  // a forges b's MAC to poison the switch and b's DHCP lease.
  a.send(buildArpFrame(ARP_REQUEST, b.mac, b.ip, 0, ip('10.0.2.2'), BROADCAST_MAC));
  a.send(buildIcmpEchoFrame(BROADCAST_MAC, b.mac, b.ip, ip('10.0.2.2'), 8, 1, 1, new Uint8Array(4)));
  const s = net.stats().ports.find((p) => p.id === 'a')!;
  assert.equal(s.spoofDropped, 2);
  assert.equal(net.stats().gateway.arpReplies, 0);
  const code = (fn: () => unknown) => {
    try {
      fn();
      return 'ok';
    } catch (e) {
      assert.ok(e instanceof NetworkError);
      return e.code;
    }
  };
  assert.equal(
    code(() => net.attach('a', { mac: '52:54:00:00:00:09' }, () => {})),
    'NicExists',
  );
  assert.equal(
    code(() => net.attach('z', { mac: '52:54:00:00:00:01' }, () => {})),
    'MacInUse',
  );
  assert.equal(
    code(() => net.attach('z', { mac: '52:55:0a:00:02:02' }, () => {})),
    'MacInUse',
  );
  assert.equal(
    code(() => net.attach('z', { mac: '01:00:5e:00:00:01' }, () => {})),
    'BadMac',
  );
  assert.equal(
    code(() => net.attach('z', { mac: 'nope' }, () => {})),
    'BadMac',
  );
  assert.equal(
    code(() => net.attach('z', { mac: '52:54:00:00:00:0a', hostname: 'bad_name' }, () => {})),
    'BadHostname',
  );
  net.close();
  assert.equal(
    code(() => net.attach('z', { mac: '52:54:00:00:00:0a' }, () => {})),
    'Closed',
  );
});

test('isolated: a guest SYN to the gateway (no forward) gets RST and never reaches the host', () => {
  // noSockets (the default in makeNetwork) fails the test if any host connection is attempted.
  const { net } = makeNetwork({ mode: 'isolated' });
  const g = new TestGuest(net, 'a', '52:54:00:00:00:01');
  g.dhcp();
  g.gatewayMac = g.arp(ip('10.0.2.2'))!;
  g.send(
    buildTcpFrame(g.gatewayMac, g.mac, g.ip, ip('10.0.2.2'), {
      srcPort: 40000,
      dstPort: 22,
      seq: 1,
      ack: 0,
      flags: TCP_SYN,
      window: 1000,
      payload: new Uint8Array(0),
    }),
  );
  const rst = g.take((r) => r.tcp !== undefined);
  assert.ok(rst && rst.tcp!.seg.flags & TCP_RST);
  assert.equal(net.stats().tcpNat.deniedDestination, 1);
  // A guest claiming the gateway's own address as its source is not NATed anywhere.
  const nat = makeNetwork().net;
  const h = new TestGuest(nat, 'h', '52:54:00:00:00:02');
  h.dhcp();
  h.gatewayMac = h.arp(ip('10.0.2.2'))!;
  h.send(
    buildTcpFrame(h.gatewayMac, h.mac, ip('10.0.2.2'), ip('10.0.2.2'), {
      srcPort: 40000,
      dstPort: 22,
      seq: 1,
      ack: 0,
      flags: TCP_SYN,
      window: 1000,
      payload: new Uint8Array(0),
    }),
  );
  h.sendUdp(ip('192.0.2.1'), 1, 2, new Uint8Array(1), h.gatewayMac, ip('10.0.2.3'));
  assert.equal(nat.stats().tcpNat.connectsStarted, 0);
  assert.equal(nat.stats().udpNat!.flowsOpened, 0);
});
