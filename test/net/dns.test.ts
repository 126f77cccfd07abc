import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TestGuest } from './guest.js';
import { makeNetwork, ip } from './rig.js';
import { nodeResolver } from '../../src/net/node-resolver.js';
import {
  buildDnsQuery,
  parseDnsQuery,
  RCODE_FORMERR,
  RCODE_NOERROR,
  RCODE_NXDOMAIN,
  RCODE_NOTIMP,
  RCODE_SERVFAIL,
  type DnsResolver,
} from '../../src/net/dns.js';
import { formatIp } from '../../src/net/packet/ipv4.js';

const DNS = ip('10.0.2.3');

function guests(mode: 'nat' | 'isolated', resolver?: DnsResolver) {
  const { net } = makeNetwork({ mode, resolver, dnsHosts: { 'db.example': '192.0.2.10', 'Cache.Local.': '10.0.2.200' } });
  const a = new TestGuest(net, 'a', '52:54:00:00:00:01', 'alpha');
  const b = new TestGuest(net, 'b', '52:54:00:00:00:02', 'Beta');
  a.dhcp();
  b.dhcp();
  a.gatewayMac = a.arp(ip('10.0.2.2'))!;
  return { net, a, b };
}

test('DNS: VM names, the host alias and static hosts are answered locally', async () => {
  const { net, a, b } = guests('isolated');
  const answer = async (name: string, type = 1) => {
    const r = await a.dns(DNS, name, type);
    return { rcode: r.rcode, answers: r.answers.map(formatIp) };
  };
  assert.deepEqual(await answer('beta'), { rcode: RCODE_NOERROR, answers: [formatIp(b.ip)] });
  assert.deepEqual(await answer('BETA.typevisor.internal'), { rcode: RCODE_NOERROR, answers: [formatIp(b.ip)] });
  assert.deepEqual(await answer('alpha'), { rcode: RCODE_NOERROR, answers: ['10.0.2.15'] });
  assert.deepEqual(await answer('host.typevisor.internal'), { rcode: RCODE_NOERROR, answers: ['10.0.2.2'] });
  assert.deepEqual(await answer('db.example'), { rcode: RCODE_NOERROR, answers: ['192.0.2.10'] });
  assert.deepEqual(await answer('cache.local'), { rcode: RCODE_NOERROR, answers: ['10.0.2.200'] });
  assert.deepEqual(await answer('beta', 28), { rcode: RCODE_NOERROR, answers: [] }, 'AAAA for a local name: no data');
  assert.deepEqual(await answer('example.com'), { rcode: RCODE_NXDOMAIN, answers: [] }, 'isolated: nothing else exists');
  const s = net.stats().gateway;
  assert.equal(s.dnsQueries, 8);
  assert.equal(s.dnsAnsweredLocal, 7);
  assert.equal(s.dnsNxdomain, 1);
});

test('DNS: nat mode forwards A lookups through getaddrinfo (localhost via /etc/hosts)', async () => {
  const { a } = guests('nat', nodeResolver);
  const r = await a.dns(DNS, 'localhost');
  assert.equal(r.rcode, RCODE_NOERROR);
  assert.deepEqual(r.answers.map(formatIp), ['127.0.0.1']);
});

test('DNS: a name the resolver does not know is NXDOMAIN', async () => {
  // A stub resolver: looking up a non-existent name for real would query the host's nameserver off-machine.
  const { a } = guests('nat', { lookupA: async () => 'NXDOMAIN' });
  const nx = await a.dns(DNS, 'no-such-name.invalid', 1, 0x4444);
  assert.equal(nx.rcode, RCODE_NXDOMAIN);
});

test('DNS: resolver failures become SERVFAIL, and in-flight lookups are bounded', async () => {
  const pending: (() => void)[] = [];
  const slow: DnsResolver = {
    lookupA: (name) =>
      name === 'boom'
        ? Promise.reject(new Error('resolver exploded'))
        : new Promise((resolve) => pending.push(() => resolve({ addresses: [ip('198.51.100.7')] }))),
  };
  const { net, a } = guests('nat', slow);
  assert.equal((await a.dns(DNS, 'boom')).rcode, RCODE_SERVFAIL);
  for (let i = 0; i < 200; i++) a.dnsQuery(DNS, `n${i}.example`, 1, 0x1000 + i);
  assert.equal(pending.length, 128);
  assert.equal(net.stats().gateway.dnsBusy, 72);
  for (const p of pending) p();
  const r = await a.next((r) => r.udp?.srcPort === 53 && r.udp.payload[0] === 0x10 && r.udp.payload[1] === 0x05);
  assert.equal(r.udp!.payload[3] & 0xf, RCODE_NOERROR);
});

test('DNS: malformed queries get FORMERR/NOTIMP or nothing, never a throw', async () => {
  const { net, a } = guests('nat', { lookupA: async () => 'NXDOMAIN' });
  const q = buildDnsQuery(0x5555, 'alpha');
  const send = (p: Uint8Array) => a.sendUdp(DNS, 5353, 53, p);
  const rcodeOf = async (id: number) => {
    const r = await a.next((r) => r.udp?.srcPort === 53 && ((r.udp.payload[0] << 8) | r.udp.payload[1]) === id);
    return r.udp!.payload[3] & 0xf;
  };
  const twoQuestions = q.slice();
  twoQuestions[5] = 2;
  send(twoQuestions);
  assert.equal(await rcodeOf(0x5555), RCODE_FORMERR);
  const opcode = q.slice();
  opcode[0] = 0x66;
  opcode[2] = 0x10;
  send(opcode);
  assert.equal(await rcodeOf(0x6655), RCODE_NOTIMP);
  const errors = (text: string) => parseDnsQuery(Uint8Array.from(Buffer.from(text, 'hex')));
  assert.deepEqual(errors('1234'), { error: 'DnsTooShort' });
  assert.deepEqual(errors('123481000001000000000000'), { error: 'DnsNotQuery' });
  assert.deepEqual(errors('1234010000010000000000000161c00c'), { error: 'DnsCompressedQuestion', id: 0x1234 });
  assert.deepEqual(errors('12340100000100000000000040'), { error: 'DnsBadLabel', id: 0x1234 });
  assert.deepEqual(errors('1234010000010000000000000561'), { error: 'DnsTruncatedQuestion', id: 0x1234 });
  assert.deepEqual(errors('123401000001000000000000012e0000010001'), { error: 'DnsBadLabel', id: 0x1234 });
  assert.deepEqual(
    parseDnsQuery(
      Uint8Array.from([
        0x12,
        0x34,
        1,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        ...Array(5)
          .fill([63, ...Array(63).fill(0x61)])
          .flat(),
        0,
        0,
        1,
        0,
        1,
      ]),
    ),
    {
      error: 'DnsNameTooLong',
      id: 0x1234,
    },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (p) => {
      assert.doesNotThrow(() => parseDnsQuery(p));
      send(p);
    }),
    { numRuns: 3000 },
  );
  assert.ok(net.stats().gateway.dnsErrors > 0);
});

test('DNS: unknown names in the internal zones are NXDOMAIN in nat mode too, never forwarded', async () => {
  const asked: string[] = [];
  const { a } = guests('nat', {
    lookupA: async (name) => {
      asked.push(name);
      return { addresses: [ip('192.0.2.99')] };
    },
  });
  assert.equal((await a.dns(DNS, 'nobody.typevisor.internal')).rcode, RCODE_NXDOMAIN);
  assert.equal((await a.dns(DNS, 'typevisor.internal', 1, 0x2222)).rcode, RCODE_NXDOMAIN);
  assert.deepEqual(asked, []);
  assert.deepEqual((await a.dns(DNS, 'example.com', 1, 0x3333)).answers.map(formatIp), ['192.0.2.99']);
  assert.deepEqual(asked, ['example.com']);
});
