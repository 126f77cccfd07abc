/**
 * The networking issue's evidence with real Linux guests, through the real daemon and the `typevisor` CLI:
 * VM↔VM ping and a 50 MiB nc transfer checked by sha256 at both ends, a host fetch through a published port
 * (busybox httpd in the guest), a guest fetch from the host's loopback through the NAT with a name resolved by
 * the built-in DNS, and isolation between two isolated networks measured with the guest's own packet counters.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { get as httpGet } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { VmView } from '../../src/host/actions.js';
import { removeHome, startDaemonProcess, waitFor, type DaemonHandle } from '../host/daemon-harness.js';
import { runCli } from '../helpers/cli.js';

let d: DaemonHandle;
const cli = (...args: string[]) => runCli(d.home, args);

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Runs a command in the guest; fails the test with the guest's output when it exits non-zero. */
async function guest(vm: string, script: string, timeoutSeconds = 300): Promise<string> {
  const r = await cli('exec', vm, '--timeout', String(timeoutSeconds), '--', 'sh', '-c', script);
  assert.equal(r.status, 0, `${vm}: '${script}' exited ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** Boots a VM and waits until its agent answers and its first NIC has a DHCP lease; returns that address. */
async function bootWithAddress(vm: string): Promise<string> {
  // The ready marker comes after init started the agent: a request sent earlier could reach the port before
  // the agent listens on it.
  await waitFor(
    `${vm} boot`,
    async () =>
      (await d.client.text(`/vms/${vm}/console.log`)).toString('latin1').includes('typevisor-guest: ready') ? true : undefined,
    600_000,
    500,
  );
  await waitFor(
    `${vm} agent`,
    async () => ((await cli('exec', vm, '--timeout', '120', '--', 'true')).status === 0 ? true : undefined),
    600_000,
    1000,
  );
  return waitFor(
    `${vm} DHCP lease`,
    async () => (await d.client.json<VmView>('GET', `/vms/${vm}`)).addresses[0]?.ip,
    120_000,
    500,
  );
}

function fetchText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer from ${url} in 30 s`)));
  });
}

const rxPackets = async (vm: string) => Number((await guest(vm, 'cat /sys/class/net/eth0/statistics/rx_packets')).trim());

before(async () => {
  d = await startDaemonProcess({ runtime: 'machine' });
});
after(async () => {
  await d.stop();
  removeHome(d.home);
});

test('two VMs on the default network: DHCP, ping, 50 MiB over nc with matching sha256', { timeout: 1_200_000 }, async (t) => {
  for (const vm of ['neta', 'netb']) assert.equal((await cli('create', vm, '--memory', '192', '--start')).status, 0);
  const [ipA, ipB] = await Promise.all([bootWithAddress('neta'), bootWithAddress('netb')]);
  t.diagnostic(`neta ${ipA}, netb ${ipB}`);
  assert.match(ipA, /^10\.0\.2\.\d+$/);
  assert.notEqual(ipA, ipB);
  // The address is in `typevisor info` too.
  assert.match((await cli('info', 'neta')).stdout, new RegExp(`nic0 +default 52:54:00:[0-9a-f:]+ ${ipA.replace(/\./g, '\\.')}`));

  const ping = await guest('neta', `ping -c 3 ${ipB}`);
  assert.match(ping, /3 packets transmitted, 3 (packets )?received/);

  // 50 MiB from neta to netb with busybox nc; both ends hash what they saw.
  await guest('neta', 'head -c 52428800 /dev/urandom > /tmp/blob && sha256sum /tmp/blob > /tmp/blob.sum');
  await guest('netb', 'nc -l -p 5001 > /tmp/blob </dev/null 2>/dev/null & echo $! > /tmp/nc.pid');
  const t0 = Date.now();
  await guest('neta', `nc ${ipB} 5001 < /tmp/blob`, 600);
  await guest('netb', 'while kill -0 $(cat /tmp/nc.pid) 2>/dev/null; do sleep 0.2; done', 120);
  const seconds = (Date.now() - t0) / 1000;
  t.diagnostic(`50 MiB VM→VM in ${seconds.toFixed(1)} s (${(50 / seconds).toFixed(2)} MiB/s)`);
  const sent = (await guest('neta', 'cat /tmp/blob.sum')).split(/\s+/)[0];
  const received = (await guest('netb', 'sha256sum /tmp/blob')).split(/\s+/)[0];
  assert.match(sent!, /^[0-9a-f]{64}$/);
  assert.equal(received, sent);

  // The NIC counters moved with the data (both directions, at the device).
  const stats = await d.client.json<VmView>('GET', '/vms/neta');
  assert.ok(stats.stats!.nics[0]!.txBytes > 50 * 1024 * 1024, `neta tx ${stats.stats!.nics[0]!.txBytes}`);
  assert.ok(stats.stats!.netTxPackets > 30_000);
  for (const vm of ['neta', 'netb']) await cli('rm', '--force', vm);
});

test('host → VM through a published port, VM → host through the NAT and the built-in DNS', { timeout: 900_000 }, async (t) => {
  const hostPort = await freePort();
  const server: Server = createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`hello guest, you asked for ${req.url}\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const serverPort = (server.address() as AddressInfo).port;
  try {
    assert.equal((await cli('create', 'web', '--memory', '128', '--publish', `${hostPort}:80`, '--start')).status, 0);
    await bootWithAddress('web');
    await guest('web', 'mkdir -p /www && echo "hello from the guest" > /www/index.html && httpd -p 80 -h /www');
    const page = await fetchText(`http://127.0.0.1:${hostPort}/index.html`);
    assert.equal(page.status, 200);
    assert.equal(page.body, 'hello from the guest\n');

    // The guest reaches the host's loopback through the gateway, by address and by the name the DNS serves.
    const byIp = await guest('web', `wget -q -O - http://10.0.2.2:${serverPort}/by-ip`);
    assert.equal(byIp, 'hello guest, you asked for /by-ip\n');
    const lookup = await guest('web', 'nslookup host.typevisor.internal');
    assert.match(lookup, /10\.0\.2\.2/);
    const byName = await guest('web', `wget -q -O - http://host.typevisor.internal:${serverPort}/by-name`);
    assert.equal(byName, 'hello guest, you asked for /by-name\n');
    t.diagnostic(`published 127.0.0.1:${hostPort} → web:80; guest fetched 127.0.0.1:${serverPort} by IP and by name`);
    await cli('rm', '--force', 'web');
  } finally {
    server.close();
  }
});

test("isolated networks: VMs on one never see the other network's frames", { timeout: 900_000 }, async (t) => {
  assert.equal((await cli('network', 'create', 'iso1', '--mode', 'isolated', '--subnet', '10.0.51.0/24')).status, 0);
  assert.equal((await cli('network', 'create', 'iso2', '--mode', 'isolated', '--subnet', '10.0.52.0/24')).status, 0);
  for (const [vm, net] of [
    ['isoa', 'iso1'],
    ['isob', 'iso1'],
    ['isoc', 'iso2'],
  ] as const)
    assert.equal((await cli('create', vm, '--memory', '128', '--nic', `network=${net}`, '--start')).status, 0);
  const [ipA, ipB, ipC] = await Promise.all(['isoa', 'isob', 'isoc'].map(bootWithAddress));
  assert.match(ipA!, /^10\.0\.51\./);
  assert.match(ipC!, /^10\.0\.52\./);
  // Same network: reachable.
  assert.match(await guest('isoa', `ping -c 2 ${ipB}`), /2 packets transmitted, 2 (packets )?received/);
  // Broadcast floods every port of iso1; iso2's VM must not see one of those frames.
  const before = await rxPackets('isoc');
  await guest('isoa', 'ping -b -c 20 -i 0.1 10.0.51.255 >/dev/null 2>&1; arping -c 5 -I eth0 10.0.51.254 >/dev/null 2>&1; true');
  const after = await rxPackets('isoc');
  t.diagnostic(`isoc rx_packets ${before} → ${after} while isoa flooded iso1`);
  assert.equal(after, before, 'a frame from iso1 reached iso2');
  // And a different network is not reachable at all.
  const cross = await cli('exec', 'isoa', '--', 'ping', '-c', '2', '-W', '1', ipC!);
  assert.notEqual(cross.status, 0);
  for (const vm of ['isoa', 'isob', 'isoc']) await cli('rm', '--force', vm);
  // Removing a network refuses while a VM uses it, then works.
  assert.equal((await cli('network', 'rm', 'iso2')).status, 0);
});
