import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnNetworkWorker, startNetwork } from '../../src/net/network-host.js';
import { connectNicPort } from '../../src/net/frame-port.js';
import { buildUdpFrame, parseUdp } from '../../src/net/packet/udp.js';
import { parseEthernet, parseMac, BROADCAST_MAC } from '../../src/net/packet/ethernet.js';
import { parseIpv4, formatIp } from '../../src/net/packet/ipv4.js';
import { buildDhcpRequest, parseDhcpReply, DHCPDISCOVER, DHCPREQUEST, DHCPOFFER, DHCPACK } from '../../src/net/dhcp.js';
import { ForwardError } from '../../src/net/forwards.js';
import { NetworkError } from '../../src/net/network.js';
import { SubnetError } from '../../src/net/subnet.js';
import { ip } from './rig.js';
import { createServer as createHttpServer } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { TcpEndpoint } from '../../src/net/tcp/connection.js';
import { buildTcpFrame, parseTcp } from '../../src/net/packet/tcp.js';
import { nodeClock } from '../../src/net/node-clock.js';

/** A guest at the far end of a NIC port, as the VM worker's virtio-net would be. */
function portGuest(port: Awaited<ReturnType<Awaited<ReturnType<typeof startNetwork>>['attachNic']>>) {
  const frames: Uint8Array[] = [];
  const waiters: { match: (f: Uint8Array) => boolean; resolve: (f: Uint8Array) => void }[] = [];
  const link = connectNicPort(port, {
    onFrames(batch) {
      for (const f of batch) {
        const i = waiters.findIndex((w) => w.match(f));
        if (i >= 0) waiters.splice(i, 1)[0].resolve(f);
        else frames.push(f);
      }
    },
  });
  const next = (match: (f: Uint8Array) => boolean) =>
    new Promise<Uint8Array>((resolve, reject) => {
      const i = frames.findIndex(match);
      if (i >= 0) return resolve(frames.splice(i, 1)[0]);
      const timer = setTimeout(() => reject(new Error('no frame within 10 s')), 10_000);
      waiters.push({ match, resolve: (f) => (clearTimeout(timer), resolve(f)) });
    });
  return { link, frames, next };
}

function udpOf(f: Uint8Array) {
  const eth = parseEthernet(f);
  if (typeof eth === 'string') return undefined;
  const ipH = parseIpv4(f, 14);
  if (typeof ipH === 'string' || ipH.protocol !== 17) return undefined;
  const u = parseUdp(f, ipH);
  return typeof u === 'string' ? undefined : { ...u, src: ipH.src, dst: ipH.dst };
}

test('network worker: two NICs exchange batched frames through a real worker; DHCP lease event; stats', async (t) => {
  const net = await startNetwork({ name: 'wk', subnet: '10.0.2.0/24', mode: 'isolated' });
  t.after(() => net.close());
  const leases: { mac: string; ip: string }[] = [];
  net.onLease((l) => leases.push(l));
  const macA = '52:54:00:00:00:0a';
  const macB = '52:54:00:00:00:0b';
  const a = portGuest(await net.attachNic('a', { mac: macA, hostname: 'alpha' }));
  const b = portGuest(await net.attachNic('b', { mac: macB, hostname: 'beta' }));

  // DHCP over the port.
  const dhcp = async (g: ReturnType<typeof portGuest>, mac: string, xid: number) => {
    const chaddr = parseMac(mac);
    g.link.send(
      buildUdpFrame(
        BROADCAST_MAC,
        chaddr,
        0,
        0xffffffff,
        68,
        67,
        buildDhcpRequest({ messageType: DHCPDISCOVER, xid, chaddr, flags: 0x8000 }),
      ),
      true,
    );
    const offer = parseDhcpReply(
      udpOf(await g.next((f) => parseDhcpReply(udpOf(f)?.payload ?? new Uint8Array())?.xid === xid))!.payload,
    )!;
    assert.equal(offer.messageType, DHCPOFFER);
    g.link.send(
      buildUdpFrame(
        BROADCAST_MAC,
        chaddr,
        0,
        0xffffffff,
        68,
        67,
        buildDhcpRequest({
          messageType: DHCPREQUEST,
          xid: xid + 1,
          chaddr,
          flags: 0x8000,
          requestedIp: offer.yiaddr,
          serverId: ip('10.0.2.2'),
        }),
      ),
      true,
    );
    const ack = parseDhcpReply(
      udpOf(await g.next((f) => parseDhcpReply(udpOf(f)?.payload ?? new Uint8Array())?.xid === xid + 1))!.payload,
    )!;
    assert.equal(ack.messageType, DHCPACK);
    return ack.yiaddr;
  };
  const ipA = await dhcp(a, macA, 100);
  const ipB = await dhcp(b, macB, 200);
  assert.equal(formatIp(ipA), '10.0.2.15');
  assert.equal(formatIp(ipB), '10.0.2.16');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(leases, [
    { mac: macA, ip: '10.0.2.15' },
    { mac: macB, ip: '10.0.2.16' },
  ]);
  assert.deepEqual(
    (await net.leases()).map((l) => [l.mac, l.ip, l.hostname]),
    [
      [macA, '10.0.2.15', 'alpha'],
      [macB, '10.0.2.16', 'beta'],
    ],
  );

  // 200 frames from a to b in one turn: they travel in a handful of messages, not 200.
  const before = b.link.counters.receivedBatches;
  const got: number[] = [];
  const all = new Promise<void>((resolve) => {
    const check = () => {
      for (let f; (f = b.frames.shift());) {
        const u = udpOf(f);
        if (u?.dstPort === 9000) got.push(u.payload[0] | (u.payload[1] << 8));
      }
      if (got.length === 200) resolve();
      else setTimeout(check, 5);
    };
    check();
  });
  for (let i = 0; i < 200; i++)
    a.link.send(buildUdpFrame(parseMac(macB), parseMac(macA), ipA, ipB, 1234, 9000, Uint8Array.from([i & 0xff, i >> 8])), true);
  assert.equal(a.link.counters.sentBatches, 2, 'queued, not yet posted (the two DHCP batches went earlier)');
  await all;
  assert.deepEqual(got, [...Array(200).keys()], 'in order, none lost');
  const batches = b.link.counters.receivedBatches - before;
  assert.ok(batches <= 4, `200 frames arrived in ${batches} messages`);

  const s = await net.stats();
  const pa = s.ports.find((p) => p.id === 'a')!;
  const pb = s.ports.find((p) => p.id === 'b')!;
  assert.equal(pa.rxFrames, 202);
  assert.ok(pb.txFrames >= 200);
  assert.equal(s.dhcp.ack, 2);

  // Named errors cross the thread boundary.
  await assert.rejects(
    net.attachNic('a', { mac: '52:54:00:00:00:0c' }),
    (e: unknown) => e instanceof NetworkError && e.code === 'NicExists',
  );
  await assert.rejects(
    net.addForward({ proto: 'tcp', hostIp: 'nope', hostPort: 1, guestMac: macA, guestPort: 1 }),
    (e: unknown) => e instanceof ForwardError && e.code === 'BadAddress',
  );
  await net.detachNic('b');
  assert.equal(
    (await net.stats()).ports.some((p) => p.id === 'b'),
    false,
  );
});

test('network worker: a bad configuration is a named error, and a closed VM port unplugs the NIC', async (t) => {
  await assert.rejects(
    startNetwork({ name: 'bad', subnet: '10.0.2.1/24', mode: 'nat' }),
    (e: unknown) => e instanceof SubnetError && e.code === 'NotNetworkAddress',
  );
  await assert.rejects(
    startNetwork({ name: 'bad', subnet: '10.0.2.0/24', mode: 'nat', leases: { '52:54:00:00:00:01': '10.0.2.3' } }),
    (e: unknown) => e instanceof SubnetError && e.code === 'BadAddress',
  );
  const net = await startNetwork({ name: 'wk2', subnet: '192.168.50.0/24', mode: 'nat' });
  t.after(() => net.close());
  const port = await net.attachNic('x', { mac: '52:54:00:00:00:01' });
  assert.equal((await net.stats()).ports.length, 2);
  port.close();
  for (let i = 0; i < 100 && (await net.stats()).ports.length > 1; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(
    (await net.stats()).ports.map((p) => p.id),
    ['gateway'],
  );
});

test('network worker: garbage on a NIC port is dropped, the network keeps working', async (t) => {
  const net = await startNetwork({ name: 'wk3', subnet: '10.0.2.0/24', mode: 'isolated' });
  t.after(() => net.close());
  const port = await net.attachNic('x', { mac: '52:54:00:00:00:01' });
  port.postMessage('not an array');
  port.postMessage([1, 'two', { three: 3 }, new Uint8Array(70_000), new Uint8Array(5)]);
  port.postMessage(Array.from({ length: 5000 }, () => new Uint8Array(60)));
  port.postMessage(null);
  const g = portGuest(port);
  g.link.send(
    buildUdpFrame(
      BROADCAST_MAC,
      parseMac('52:54:00:00:00:01'),
      0,
      0xffffffff,
      68,
      67,
      buildDhcpRequest({ messageType: DHCPDISCOVER, xid: 7, chaddr: parseMac('52:54:00:00:00:01'), flags: 0x8000 }),
    ),
  );
  const offer = await g.next((f) => parseDhcpReply(udpOf(f)?.payload ?? new Uint8Array())?.xid === 7);
  assert.ok(offer);
  const s = await net.stats();
  const p = s.ports.find((p) => p.id === 'x')!;
  // The 5-byte frame and 4096 of the 5000 60-byte frames reached the switch; the rest was dropped at the port.
  assert.equal(p.rxFrames, 1 + 4096 + 1);
  assert.ok(p.rxDropped >= 1);
});

test('network worker: a guest behind the NIC port fetches a page from the host loopback through the worker NAT', async (t) => {
  const http = createHttpServer((req, res) => res.end(`worker says hi to ${req.url}`));
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  const hostPort = (http.address() as AddressInfo).port;
  const net = await startNetwork({ name: 'wk4', subnet: '10.0.2.0/24', mode: 'nat' });
  t.after(async () => {
    await net.close();
    http.close();
  });
  const mac = parseMac('52:54:00:00:00:01');
  const gwMac = parseMac('52:55:0a:00:02:02');
  const gateway = ip('10.0.2.2');
  let ep: TcpEndpoint | undefined;
  let dhcpWaiter: ((p: Uint8Array) => void) | undefined;
  const link = connectNicPort(await net.attachNic('nic0', { mac: '52:54:00:00:00:01' }), {
    onFrames(frames) {
      for (const f of frames) {
        const ipH = parseIpv4(f, 14);
        if (typeof ipH === 'string') continue;
        if (ipH.protocol === 6) {
          const seg = parseTcp(f, ipH);
          // Asynchronously: an endpoint is never re-entered from its own emit.
          if (typeof seg !== 'string') queueMicrotask(() => ep?.handleSegment(seg));
        } else {
          const u = udpOf(f);
          if (u?.dstPort === 68) dhcpWaiter?.(u.payload);
        }
      }
    },
  });
  const dhcp = (type: number, extra: object) =>
    new Promise<Uint8Array>((resolve) => {
      dhcpWaiter = resolve;
      link.send(
        buildUdpFrame(
          BROADCAST_MAC,
          mac,
          0,
          0xffffffff,
          68,
          67,
          buildDhcpRequest({ messageType: type, xid: 40 + type, chaddr: mac, flags: 0x8000, ...extra }),
        ),
        true,
      );
    });
  const offer = parseDhcpReply(await dhcp(DHCPDISCOVER, {}))!;
  await dhcp(DHCPREQUEST, { requestedIp: offer.yiaddr, serverId: gateway });
  const guestIp = offer.yiaddr;
  const body = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    ep = TcpEndpoint.connect(
      { localPort: 40001, remotePort: hostPort },
      {
        emit: (seg) => link.send(buildTcpFrame(gwMac, mac, guestIp, gateway, seg), true),
        now: () => nodeClock.now(),
        setTimer: (ms, fn) => nodeClock.setTimer(ms, fn),
        clearTimer: (h) => nodeClock.clearTimer(h),
      },
    );
    ep.onConnect = () => ep!.write(Buffer.from('GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'));
    ep.onData = (d) => {
      chunks.push(Buffer.from(d));
      ep!.consumed(d.length);
    };
    ep.onEnd = () => {
      ep!.end();
      resolve(Buffer.concat(chunks).toString());
    };
    ep.onClose = (reason) => reason !== 'closed' && reject(new Error(reason));
  });
  assert.match(body, /^HTTP\/1\.1 200 OK/);
  assert.match(body, /worker says hi to \/x$/);
  const s = await net.stats();
  assert.equal(s.tcpNat.connectsSucceeded, 1);
  assert.ok(s.tcpNat.toGuestBytes > 0 && s.tcpNat.toHostBytes > 0);
});

test('network worker: a worker started ahead of need takes its network by message; a bad one fails as from scratch', async (t) => {
  const idle = await spawnNetworkWorker();
  const exited = new Promise<number>((resolve) => idle.once('exit', resolve));
  const net = await startNetwork({ name: 'pooled', subnet: '10.0.7.0/24', mode: 'isolated' }, { worker: idle });
  t.after(() => net.close());
  const port = await net.attachNic('p', { mac: '52:54:00:00:00:07' });
  assert.deepEqual(
    (await net.stats()).ports.map((p) => p.id),
    ['gateway', 'p'],
    'the ready worker runs the network it was given',
  );
  port.close();
  await net.close();
  assert.equal(await exited, 0, 'closing the network ends the worker it ran in');

  // The configuration is checked inside the worker too: a bad lease is a named error, and the worker ends.
  const second = await spawnNetworkWorker();
  const secondExit = new Promise<number>((resolve) => second.once('exit', resolve));
  await assert.rejects(
    startNetwork(
      { name: 'bad', subnet: '10.0.8.0/24', mode: 'nat', leases: { '52:54:00:00:00:01': '10.0.8.3' } },
      { worker: second },
    ),
    (e: unknown) => e instanceof SubnetError && e.code === 'BadAddress',
  );
  await secondExit;

  // A ready worker that died meanwhile is not used: the network starts in a new one.
  const dead = await spawnNetworkWorker();
  await dead.terminate();
  const fresh = await startNetwork({ name: 'fresh', subnet: '10.0.9.0/24', mode: 'isolated' }, { worker: dead });
  t.after(() => fresh.close());
  assert.deepEqual(
    (await fresh.stats()).ports.map((p) => p.id),
    ['gateway'],
  );
});
