import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TestGuest } from './guest.js';
import { makeNetwork, ip } from './rig.js';
import {
  DHCPACK,
  DHCPDECLINE,
  DHCPDISCOVER,
  DHCPINFORM,
  DHCPNAK,
  DHCPOFFER,
  DHCPRELEASE,
  DHCPREQUEST,
  DHCP_OPTION,
  buildDhcpRequest,
  parseDhcp,
} from '../../src/net/dhcp.js';
import { buildUdpFrame } from '../../src/net/packet/udp.js';
import { BROADCAST_MAC } from '../../src/net/packet/ethernet.js';
import { formatIp } from '../../src/net/packet/ipv4.js';
import { SubnetError, parseCidr } from '../../src/net/subnet.js';

test('DHCP: full DORA gives the first pool address with the network options', () => {
  const { net, leases } = makeNetwork();
  const g = new TestGuest(net, 'nic0', '52:54:00:00:00:01', 'alpha');
  const ack = g.dhcp();
  assert.equal(formatIp(g.ip), '10.0.2.15');
  const opt = (code: number) => Array.from(ack.options.get(code) ?? []);
  assert.deepEqual(opt(DHCP_OPTION.subnetMask), [255, 255, 255, 0]);
  assert.deepEqual(opt(DHCP_OPTION.router), [10, 0, 2, 2]);
  assert.deepEqual(opt(DHCP_OPTION.dns), [10, 0, 2, 3]);
  assert.deepEqual(opt(DHCP_OPTION.leaseTime), [0, 1, 0x51, 0x80]);
  assert.equal(Buffer.from(ack.options.get(DHCP_OPTION.hostname)!).toString(), 'alpha');
  assert.equal(Buffer.from(ack.options.get(DHCP_OPTION.domain)!).toString(), 'typevisor.internal');
  assert.deepEqual(leases, [['52:54:00:00:00:01', '10.0.2.15']]);
  assert.deepEqual(net.leases(), [{ mac: '52:54:00:00:00:01', ip: '10.0.2.15', bound: true, hostname: 'alpha', nicId: 'nic0' }]);
  const s = net.stats().dhcp;
  assert.equal(s.discover, 1);
  assert.equal(s.offer, 1);
  assert.equal(s.request, 1);
  assert.equal(s.ack, 1);
});

test('DHCP: isolated networks offer no router', () => {
  const { net } = makeNetwork({ mode: 'isolated' });
  const g = new TestGuest(net, 'nic0', '52:54:00:00:00:01');
  const ack = g.dhcp();
  assert.equal(ack.options.get(DHCP_OPTION.router), undefined);
  assert.ok(ack.options.get(DHCP_OPTION.dns));
});

test('DHCP: a known MAC keeps its address (stable leases), and a re-attached NIC gets it again', () => {
  const { net, leases } = makeNetwork({ leases: { '52:54:00:00:00:09': '10.0.2.77' } });
  const a = new TestGuest(net, 'a', '52:54:00:00:00:01');
  const b = new TestGuest(net, 'b', '52:54:00:00:00:09');
  a.dhcp();
  b.dhcp();
  assert.equal(formatIp(a.ip), '10.0.2.15');
  assert.equal(formatIp(b.ip), '10.0.2.77');
  assert.deepEqual(leases, [['52:54:00:00:00:01', '10.0.2.15']], 'only new leases are reported');
  // RELEASE keeps the reservation: a new client never takes a released address.
  a.dhcpSend(DHCPRELEASE, { ciaddr: a.ip });
  assert.equal(net.leases().find((l) => l.mac === '52:54:00:00:00:01')?.bound, false);
  a.nic.detach();
  const c = new TestGuest(net, 'c', '52:54:00:00:00:03');
  c.dhcp();
  assert.equal(formatIp(c.ip), '10.0.2.16');
  const a2 = new TestGuest(net, 'a2', '52:54:00:00:00:01');
  a2.dhcp();
  assert.equal(formatIp(a2.ip), '10.0.2.15');
});

test('DHCP: NAK for a foreign or taken address; INIT-REBOOT for a free one is granted', () => {
  const { net } = makeNetwork();
  const a = new TestGuest(net, 'a', '52:54:00:00:00:01');
  a.dhcp();
  const b = new TestGuest(net, 'b', '52:54:00:00:00:02');
  let x = b.dhcpSend(DHCPREQUEST, { requestedIp: ip('192.168.1.50') });
  assert.equal(b.dhcpReply(x)?.messageType, DHCPNAK);
  x = b.dhcpSend(DHCPREQUEST, { requestedIp: a.ip });
  assert.equal(b.dhcpReply(x)?.messageType, DHCPNAK, "another MAC's address");
  x = b.dhcpSend(DHCPREQUEST, { requestedIp: ip('10.0.2.100') });
  const ack = b.dhcpReply(x);
  assert.equal(ack?.messageType, DHCPACK);
  assert.equal(formatIp(ack!.yiaddr), '10.0.2.100');
  // Now that b holds .100 it cannot switch to another address.
  x = b.dhcpSend(DHCPREQUEST, { requestedIp: ip('10.0.2.101') });
  assert.equal(b.dhcpReply(x)?.messageType, DHCPNAK);
  // Renewing (ciaddr, no requested IP) the right address is ACKed.
  x = b.dhcpSend(DHCPREQUEST, { ciaddr: ip('10.0.2.100') });
  assert.equal(b.dhcpReply(x)?.messageType, DHCPACK);
  // A REQUEST selecting another server is ignored.
  x = b.dhcpSend(DHCPREQUEST, { requestedIp: ip('10.0.2.100'), serverId: ip('10.0.2.9') });
  assert.equal(b.dhcpReply(x), undefined);
  // INFORM: configuration only, no lease time.
  x = b.dhcpSend(DHCPINFORM, { ciaddr: ip('10.0.2.100') });
  const inform = b.take((r) => r.udp?.dstPort === 68);
  assert.ok(inform);
  void x;
  assert.ok(net.stats().dhcp.nak >= 3);
});

test('DHCP: pool exhaustion stops offers; a /29 has a tiny pool', () => {
  const plan = parseCidr('10.9.0.0/29');
  assert.equal(formatIp(plan.poolStart), '10.9.0.4');
  assert.equal(formatIp(plan.poolEnd), '10.9.0.6');
  const { net } = makeNetwork({ subnet: '10.9.0.0/29' });
  const guests = [1, 2, 3, 4].map((i) => new TestGuest(net, `n${i}`, `52:54:00:00:00:0${i}`));
  for (const g of guests.slice(0, 3)) g.dhcp();
  assert.deepEqual(
    guests.slice(0, 3).map((g) => formatIp(g.ip)),
    ['10.9.0.4', '10.9.0.5', '10.9.0.6'],
  );
  const x = guests[3].dhcpSend(DHCPDISCOVER);
  assert.equal(guests[3].dhcpReply(x), undefined);
  assert.equal(net.stats().dhcp.poolExhausted, 1);
  // Forgetting a deleted VM's lease frees its address.
  net.forgetLease('52:54:00:00:00:02');
  const y = guests[3].dhcpSend(DHCPDISCOVER);
  assert.equal(formatIp(guests[3].dhcpReply(y)!.yiaddr), '10.9.0.5');
});

test('DHCP: a chaddr other than the frame source is ignored (no pool draining by invented MACs)', () => {
  const { net } = makeNetwork();
  const g = new TestGuest(net, 'a', '52:54:00:00:00:01');
  for (let i = 0; i < 50; i++) {
    const payload = buildDhcpRequest({ messageType: DHCPDISCOVER, xid: i, chaddr: 0x020000000000 + i });
    g.send(buildUdpFrame(BROADCAST_MAC, g.mac, 0, 0xffffffff, 68, 67, payload));
  }
  assert.equal(net.leases().length, 0);
  assert.equal(net.stats().dhcp.ignored, 50);
  assert.equal(g.inbox.length, 0);
});

test('DHCP parser: named errors, and garbage never throws', () => {
  const good = buildDhcpRequest({ messageType: DHCPDISCOVER, xid: 1, chaddr: 0x525400000001 });
  assert.equal(typeof parseDhcp(good), 'object');
  assert.equal(parseDhcp(good.subarray(0, 100)), 'DhcpTooShort');
  const m = (fn: (p: Uint8Array) => void) => {
    const p = good.slice();
    fn(p);
    return parseDhcp(p);
  };
  assert.equal(
    m((p) => (p[0] = 2)),
    'DhcpNotRequest',
  );
  assert.equal(
    m((p) => (p[2] = 8)),
    'DhcpBadHardware',
  );
  assert.equal(
    m((p) => (p[236] = 0)),
    'DhcpBadMagic',
  );
  assert.equal(
    m((p) => (p[241] = 2)),
    'DhcpBadOption',
  );
  assert.equal(
    m((p) => (p[240] = 12)),
    'DhcpNoMessageType',
  );
  assert.equal(
    m((p) => (p[242] = 9)),
    'DhcpBadMessageType',
  );
  assert.equal(
    m((p) => p.fill(0xfe, 240)),
    'DhcpBadOption',
  );
  const { net } = makeNetwork();
  const g = new TestGuest(net, 'a', '52:54:00:00:00:01');
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), fc.boolean(), (bytes, keepHeader) => {
      const p = keepHeader && bytes.length >= 300 ? (bytes.set(good.subarray(0, 240)), bytes) : bytes;
      assert.doesNotThrow(() => parseDhcp(p));
      g.send(buildUdpFrame(BROADCAST_MAC, g.mac, 0, 0xffffffff, 68, 67, p));
    }),
    { numRuns: 2000 },
  );
  const s = net.stats();
  assert.ok(s.dhcp.malformed > 0);
  void DHCPOFFER;
});

test('subnet: CIDR validation with named errors', () => {
  const code = (text: string) => {
    try {
      parseCidr(text);
      return 'ok';
    } catch (e) {
      assert.ok(e instanceof SubnetError);
      return e.code;
    }
  };
  assert.equal(code('10.0.2.0/24'), 'ok');
  assert.equal(code('10.0.0.0/8'), 'ok');
  assert.equal(code('10.0.2.0'), 'BadCidrSyntax');
  assert.equal(code('10.0.2.300/24'), 'BadCidrSyntax');
  assert.equal(code('10.0.2.0/7'), 'BadPrefixLength');
  assert.equal(code('10.0.2.0/30'), 'BadPrefixLength');
  assert.equal(code('10.0.2.1/24'), 'NotNetworkAddress');
  assert.throws(() => makeNetwork({ leases: { '52:54:00:00:00:01': '10.0.2.2' } }), { name: 'SubnetError', code: 'BadAddress' });
  assert.throws(() => makeNetwork({ leases: { '52:54:00:00:00:01': '10.0.3.2' } }), {
    name: 'SubnetError',
    code: 'AddressOutsideSubnet',
  });
  assert.throws(() => makeNetwork({ leases: { 'zz:54:00:00:00:01': '10.0.2.20' } }), { name: 'NetworkError', code: 'BadMac' });
});

test('DHCP: a declined address leaves the pool and the client gets another', () => {
  const { net, leases } = makeNetwork();
  const g = new TestGuest(net, 'a', '52:54:00:00:00:01');
  g.dhcp();
  assert.equal(formatIp(g.ip), '10.0.2.15');
  g.dhcpSend(DHCPDECLINE, { requestedIp: g.ip });
  g.dhcp();
  assert.equal(formatIp(g.ip), '10.0.2.16');
  assert.deepEqual(
    leases.map((l) => l[1]),
    ['10.0.2.15', '10.0.2.16'],
  );
  const other = new TestGuest(net, 'b', '52:54:00:00:00:02');
  other.dhcp();
  assert.equal(formatIp(other.ip), '10.0.2.17', 'the declined address is not offered again');
  assert.equal(net.stats().dhcp.decline, 1);
});
