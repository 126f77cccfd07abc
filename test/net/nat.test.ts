import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { createServer as createHttpServer } from 'node:http';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { VirtualNetwork } from '../../src/net/network.js';
import { nodeHostSockets } from '../../src/net/node-sockets.js';
import { nodeClock } from '../../src/net/node-clock.js';
import { ForwardError } from '../../src/net/forwards.js';
import { formatIp } from '../../src/net/packet/ipv4.js';
import { TestGuest } from './guest.js';
import { GuestTcp, readAll, whenConnected, writeAll } from './guest-tcp.js';
import { ip } from './rig.js';

const GATEWAY = ip('10.0.2.2');

function setup() {
  const net = new VirtualNetwork({ name: 'nat', subnet: '10.0.2.0/24', mode: 'nat', sockets: nodeHostSockets, clock: nodeClock });
  const g = new TestGuest(net, 'nic0', '52:54:00:00:00:01', 'vm1');
  g.dhcp();
  g.gatewayMac = g.arp(GATEWAY)!;
  const tcp = new GuestTcp(g, nodeClock);
  return { net, g, tcp };
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('UDP NAT: a guest reaches a UDP echo server on the host loopback through the gateway IP', async (t) => {
  const server = createSocket('udp4');
  server.on('message', (msg, rinfo) => server.send(Buffer.concat([Buffer.from('echo:'), msg]), rinfo.port, rinfo.address));
  server.bind(0, '127.0.0.1');
  await once(server, 'listening');
  const port = server.address().port;
  const { net, g } = setup();
  t.after(() => {
    net.close();
    server.close();
  });
  g.sendUdp(GATEWAY, 4000, port, Buffer.from('ping-1'));
  g.sendUdp(GATEWAY, 4000, port, Buffer.from('ping-2'));
  for (const n of [1, 2]) {
    const r = await g.next((r) => r.udp?.dstPort === 4000);
    assert.equal(formatIp(r.udp!.src), '10.0.2.2', 'replies come from the gateway IP, not 127.0.0.1');
    assert.equal(r.udp!.srcPort, port);
    assert.equal(Buffer.from(r.udp!.payload).toString(), `echo:ping-${n}`);
  }
  const s = net.stats().udpNat!;
  assert.equal(s.flowsOpened, 1, 'one flow per guest (ip, port)');
  assert.equal(s.toHostDatagrams, 2);
  assert.equal(s.toGuestDatagrams, 2);
  // Destinations the NAT must not reach: another subnet address, loopback directly, multicast.
  g.sendUdp(ip('10.0.2.50'), 4001, port, Buffer.from('x'));
  g.sendUdp(ip('127.0.0.1'), 4001, port, Buffer.from('x'));
  g.sendUdp(ip('239.1.1.1'), 4001, port, Buffer.from('x'));
  assert.equal(net.stats().udpNat!.deniedDestination, 3);
});

test('TCP NAT: a guest fetches a page from an HTTP server on the host loopback', async (t) => {
  const http = createHttpServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`hello ${req.method} ${req.url}\n`);
  });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  const port = (http.address() as AddressInfo).port;
  const { net, tcp } = setup();
  t.after(() => {
    net.close();
    http.close();
  });
  const ep = tcp.connect(GATEWAY, port);
  await whenConnected(ep);
  const body = readAll(ep);
  ep.write(Buffer.from(`GET /index.html HTTP/1.1\r\nHost: host.typevisor.internal\r\nConnection: close\r\n\r\n`));
  const text = (await body).toString();
  assert.match(text, /^HTTP\/1\.1 200 OK/);
  assert.match(text, /hello GET \/index\.html\n$/);
  ep.end();
  const s = net.stats().tcpNat;
  assert.equal(s.connectsStarted, 1);
  assert.equal(s.connectsSucceeded, 1);
});

test('TCP NAT: 20 MiB each way arrives byte-exact, with half-close', async (t) => {
  const up = randomBytes(20 * 1024 * 1024);
  const down = randomBytes(20 * 1024 * 1024);
  let serverGot: Promise<string> | undefined;
  const server = createServer((sock: Socket) => {
    const hash = createHash('sha256');
    let n = 0;
    serverGot = new Promise((resolve) => {
      sock.on('data', (d) => {
        n += d.length;
        hash.update(d);
      });
      sock.on('end', () => resolve(`${n}:${hash.digest('hex')}`));
    });
    sock.end(down);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const { net, tcp } = setup();
  t.after(() => {
    net.close();
    server.close();
  });
  const ep = tcp.connect(GATEWAY, port);
  await whenConnected(ep);
  const received = readAll(ep);
  await writeAll(ep, up);
  const got = await received;
  assert.equal(got.length, down.length);
  assert.equal(sha(got), sha(down), 'host → guest byte-exact');
  assert.equal(await serverGot, `${up.length}:${sha(up)}`, 'guest → host byte-exact');
  const s = net.stats().tcpNat;
  assert.ok(s.toHostBytes === up.length && s.toGuestBytes === down.length);
});

test('TCP NAT: a refused host port refuses the guest connection; limits are enforced', async (t) => {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const closedPort = (probe.address() as AddressInfo).port;
  probe.close();
  const { net, tcp } = setup();
  t.after(() => net.close());
  const ep = tcp.connect(GATEWAY, closedPort);
  await assert.rejects(whenConnected(ep), /connect failed: (reset|refused)/);
  const s = net.stats().tcpNat;
  assert.equal(s.connectsFailed, 1);
  assert.equal(s.connections, 0);
});

test('port forward: a host client reaches the guest listener; UDP forward relays; errors are named', async (t) => {
  const { net, g, tcp } = setup();
  t.after(() => net.close());
  tcp.listen(8080, (ep) => {
    ep.onData = (d) => {
      ep.write(Buffer.concat([Buffer.from('guest says: '), Buffer.from(d)]));
      ep.consumed(d.length);
    };
    ep.onEnd = () => ep.end();
  });
  const fwd = await net.addForward({ proto: 'tcp', hostPort: 0, guestMac: '52:54:00:00:00:01', guestPort: 8080 });
  assert.equal(fwd.hostIp, '127.0.0.1');
  assert.ok(fwd.hostPort > 0);
  const client = connect(fwd.hostPort, '127.0.0.1');
  client.end('hi');
  const chunks: Buffer[] = [];
  client.on('data', (d) => chunks.push(d));
  await once(client, 'close');
  assert.equal(Buffer.concat(chunks).toString(), 'guest says: hi');
  assert.equal(net.forwards()[0].forwarded, 1);

  // Port in use: the forward's own port, and an unrelated listener's.
  await assert.rejects(
    net.addForward({ proto: 'tcp', hostPort: fwd.hostPort, guestMac: '52:54:00:00:00:01', guestPort: 1 }),
    (e: unknown) => e instanceof ForwardError && e.code === 'AddressInUse',
  );
  await assert.rejects(
    net.addForward({ proto: 'tcp', hostIp: '10.0.0.999', hostPort: 1, guestMac: '52:54:00:00:00:01', guestPort: 1 }),
    { code: 'BadAddress' },
  );
  await assert.rejects(net.addForward({ proto: 'tcp', hostPort: 1, guestMac: 'x', guestPort: 1 }), { code: 'BadMac' });
  await assert.rejects(net.addForward({ proto: 'tcp', hostPort: 70000, guestMac: '52:54:00:00:00:01', guestPort: 1 }), {
    code: 'BadPort',
  });
  assert.throws(() => net.removeForward('tcp:127.0.0.1:1'), { code: 'NoSuchForward' });

  // A forward to a MAC without a lease refuses at accept time.
  const orphan = await net.addForward({ proto: 'tcp', hostPort: 0, guestMac: '52:54:00:00:00:99', guestPort: 22 });
  const c2 = connect(orphan.hostPort, '127.0.0.1');
  c2.on('error', () => {});
  await once(c2, 'close');
  assert.equal(net.forwards().find((f) => f.id === orphan.id)!.refused, 1);
  net.removeForward(orphan.id);

  // UDP: the guest answers datagrams on port 5300 back to their sender.
  const udpFwd = await net.addForward({ proto: 'udp', hostPort: 0, guestMac: '52:54:00:00:00:01', guestPort: 5300 });
  const client3 = createSocket('udp4');
  t.after(() => client3.close());
  client3.send(Buffer.from('dgram'), udpFwd.hostPort, '127.0.0.1');
  const inbound = await g.next((r) => r.udp?.dstPort === 5300);
  assert.equal(Buffer.from(inbound.udp!.payload).toString(), 'dgram');
  assert.equal(formatIp(inbound.udp!.src), '10.0.2.2');
  g.sendUdp(inbound.udp!.src, 5300, inbound.udp!.srcPort, Buffer.from('reply'));
  const [msg] = await once(client3, 'message');
  assert.equal(msg.toString(), 'reply');
  net.removeForward(fwd.id);
  assert.equal(net.forwards().length, 1);
});
