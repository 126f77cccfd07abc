/**
 * NAT throughput through a real network worker: a synthetic guest on this thread (a guest-side TcpEndpoint
 * framed by the packet builders, as a VM worker's virtio-net would hand frames over) talks through its NIC port
 * to the network's worker, whose TCP NAT splices it to a host TCP server on 127.0.0.1. Prints wall-clock MB/s
 * for host → guest and guest → host; both sides' packet work runs on two threads, as in the daemon.
 *
 *   npx tsx bench/net/nat-worker.ts [--mib N] [--runs N]
 */
import { parseArgs } from 'node:util';
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { startNetwork } from '../../src/net/network-host.js';
import { connectNicPort } from '../../src/net/frame-port.js';
import { buildUdpFrame, parseUdp } from '../../src/net/packet/udp.js';
import { buildTcpFrame, parseTcp } from '../../src/net/packet/tcp.js';
import { parseEthernet, parseMac, BROADCAST_MAC } from '../../src/net/packet/ethernet.js';
import { parseIpv4 } from '../../src/net/packet/ipv4.js';
import { buildDhcpRequest, parseDhcpReply, DHCPDISCOVER, DHCPREQUEST } from '../../src/net/dhcp.js';
import { TcpEndpoint } from '../../src/net/tcp/connection.js';
import { nodeClock } from '../../src/net/node-clock.js';

const { values } = parseArgs({ options: { mib: { type: 'string', default: '64' }, runs: { type: 'string', default: '3' } } });
const size = Number(values.mib) * 1024 * 1024;
const payload = Buffer.alloc(size, 0x5a);

let mode: 'down' | 'up' = 'down';
let serverReceived = 0;
let serverDone: () => void = () => {};
const server = createServer((sock) => {
  if (mode === 'down') sock.end(payload);
  else {
    sock.on('data', (d) => (serverReceived += d.length));
    sock.on('end', () => {
      sock.end();
      serverDone();
    });
  }
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const hostPort = (server.address() as AddressInfo).port;

const net = await startNetwork({ name: 'bench', subnet: '10.0.2.0/24', mode: 'nat' });
const mac = parseMac('52:54:00:00:00:01');
const gwMac = parseMac('52:55:0a:00:02:02');
const gateway = 0x0a000202;
let guestIp = 0;
let dhcpReply: ((p: Uint8Array) => void) | undefined;
let endpoint: TcpEndpoint | undefined;
const link = connectNicPort(await net.attachNic('nic0', { mac: '52:54:00:00:00:01' }), {
  onFrames(frames) {
    for (const f of frames) {
      const eth = parseEthernet(f);
      if (typeof eth === 'string') continue;
      const ip = parseIpv4(f, 14);
      if (typeof ip === 'string') continue;
      if (ip.protocol === 17) {
        const u = parseUdp(f, ip);
        if (typeof u !== 'string' && u.dstPort === 68) dhcpReply?.(u.payload);
      } else if (ip.protocol === 6) {
        const s = parseTcp(f, ip);
        if (typeof s !== 'string') endpoint?.handleSegment(s);
      }
    }
    endpoint?.flush();
  },
});
const dhcp = (type: number, extra: object) =>
  new Promise<Uint8Array>((resolve) => {
    dhcpReply = resolve;
    link.send(
      buildUdpFrame(
        BROADCAST_MAC,
        mac,
        0,
        0xffffffff,
        68,
        67,
        buildDhcpRequest({ messageType: type, xid: type, chaddr: mac, flags: 0x8000, ...extra }),
      ),
      true,
    );
  });
const offer = parseDhcpReply(await dhcp(DHCPDISCOVER, {}))!;
await dhcp(DHCPREQUEST, { requestedIp: offer.yiaddr, serverId: gateway });
guestIp = offer.yiaddr;

let nextPort = 40000;
function open(): TcpEndpoint {
  const ep = TcpEndpoint.connect(
    { localPort: nextPort++, remotePort: hostPort },
    {
      emit: (seg) => link.send(buildTcpFrame(gwMac, mac, guestIp, gateway, seg), true),
      now: () => nodeClock.now(),
      setTimer: (ms, fn) => nodeClock.setTimer(ms, fn),
      clearTimer: (h) => nodeClock.clearTimer(h),
    },
  );
  endpoint = ep;
  return ep;
}

for (let run = 1; run <= Number(values.runs); run++) {
  mode = 'down';
  let t0 = performance.now();
  let received = 0;
  await new Promise<void>((resolve, reject) => {
    const ep = open();
    ep.onData = (d) => {
      received += d.length;
      ep.consumed(d.length);
    };
    ep.onEnd = () => ep.end();
    ep.onClose = (reason) => (received === size ? resolve() : reject(new Error(`down: ${reason} after ${received} bytes`)));
  });
  const downMs = performance.now() - t0;

  mode = 'up';
  serverReceived = 0;
  t0 = performance.now();
  await new Promise<void>((resolve) => {
    serverDone = resolve;
    const ep = open();
    let off = 0;
    const pump = () => {
      while (off < size) {
        const piece = payload.subarray(off, off + 65536);
        off += piece.length;
        if (!ep.write(piece)) return;
      }
      ep.end();
    };
    ep.onDrain = pump;
    ep.onConnect = pump;
  });
  const upMs = performance.now() - t0;
  if (serverReceived !== size) throw new Error(`up: server got ${serverReceived} of ${size}`);
  const rate = (ms: number) => (size / 1e6 / (ms / 1000)).toFixed(1);
  console.log(`run ${run}: host→guest ${rate(downMs)} MB/s, guest→host ${rate(upMs)} MB/s (${values.mib} MiB each)`);
}
const s = await net.stats();
console.log(
  `NIC port: ${link.counters.sentFrames} frames in ${link.counters.sentBatches} batches sent, ${link.counters.receivedFrames} in ${link.counters.receivedBatches} received; switch port rx ${s.ports[1].rxFrames}`,
);
await net.close();
server.close();
