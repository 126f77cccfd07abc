/**
 * Networks and NIC settings through the real daemon's API and CLI (VMs run the toy runtime, so no guest boots):
 * the network registry, the bad-request table of the networking issue (each a clear 4xx that changes nothing
 * on disk), a published port that is in use, live NIC limits, and leases surviving in the VM record.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostInfo, NetworkView, VmView } from '../../src/host/actions.js';
import { ClientError } from '../../src/cli/client.js';
import { removeHome, snapshotTree, startDaemonProcess, toyKernel, type DaemonHandle } from '../host/daemon-harness.js';
import { runCli } from '../helpers/cli.js';

let d: DaemonHandle;
let kernel: string;
const TIMEOUT = { timeout: 120_000 };

before(async () => {
  d = await startDaemonProcess();
  kernel = join(d.kernels, 'kernel.bin');
  writeFileSync(kernel, toyKernel());
});
after(async () => {
  await d.stop();
  removeHome(d.home);
});

/** Pids of processes whose title (a VM process names its VM) is `title`, once stopping ones are gone (≤ 5 s). */
async function processesTitled(title: string): Promise<number[]> {
  const find = () =>
    readdirSync('/proc')
      .filter((e) => /^\d+$/.test(e))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] === title;
        } catch {
          return false;
        }
      })
      .map(Number);
  for (let i = 0; i < 50 && find().length; i++) await new Promise((r) => setTimeout(r, 100));
  return find();
}

async function status(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; code?: string; message?: string }> {
  try {
    await d.client.json(method, path, body);
    return { status: 200 };
  } catch (err) {
    if (!(err instanceof ClientError)) throw err;
    return { status: err.status ?? 0, code: err.code, message: err.message };
  }
}

test('the default network always exists; networks are created, listed, shown and removed', TIMEOUT, async () => {
  const { networks } = await d.client.json<{ networks: NetworkView[] }>('GET', '/networks');
  const def = networks.find((n) => n.name === 'default')!;
  assert.equal(def.mode, 'nat');
  assert.equal(def.subnet, '10.0.2.0/24');
  assert.equal(def.gateway, '10.0.2.2');
  assert.equal(def.dns, '10.0.2.3');

  const made = await runCli(d.home, ['network', 'create', 'lab', '--mode', 'isolated']);
  assert.equal(made.status, 0, made.stderr);
  assert.match(made.stdout, /created network lab \(isolated, 10\.0\.3\.0\/24\)/);
  const ls = await runCli(d.home, ['network', 'ls']);
  assert.match(ls.stdout, /^lab\s+isolated\s+10\.0\.3\.0\/24\s+-\s+0\s+idle$/m);
  const info = await runCli(d.home, ['network', 'info', 'lab', '--json']);
  assert.equal((JSON.parse(info.stdout) as NetworkView).subnet, '10.0.3.0/24');
  assert.equal((await runCli(d.home, ['network', 'rm', 'lab'])).status, 0);
  assert.equal((await runCli(d.home, ['network', 'info', 'lab'])).status, 3);
});

test('bad network and NIC requests get a clear 4xx and change nothing', TIMEOUT, async () => {
  await d.client.json('POST', '/networks', { name: 'taken', subnet: '10.0.40.0/24', mode: 'isolated' });
  await d.client.json('POST', '/vms', {
    name: 'holder',
    kernel,
    nics: [{ network: 'default' }, { network: 'taken' }],
    publish: [{ hostPort: 47001, guestPort: 80 }],
  });
  const before = snapshotTree(d.home, (rel) => rel.endsWith('console.log') || rel === 'daemon.json');
  const vm = (extra: Record<string, unknown>) => ({ name: 'newvm', kernel, ...extra });
  const cases: [string, string, string, unknown, number, string][] = [
    ['bad CIDR', 'POST', '/networks', { name: 'n1', subnet: '10.0.300.0/24' }, 400, 'INVALID_CONFIG'],
    ['host bits set', 'POST', '/networks', { name: 'n1', subnet: '10.0.41.7/24' }, 400, 'INVALID_CONFIG'],
    ['prefix too long', 'POST', '/networks', { name: 'n1', subnet: '10.0.41.0/30' }, 400, 'INVALID_CONFIG'],
    ['public range', 'POST', '/networks', { name: 'n1', subnet: '8.8.8.0/24' }, 400, 'INVALID_CONFIG'],
    ['overlap', 'POST', '/networks', { name: 'n1', subnet: '10.0.0.0/16' }, 400, 'INVALID_CONFIG'],
    ['duplicate name', 'POST', '/networks', { name: 'taken', subnet: '10.0.42.0/24' }, 409, 'NETWORK_EXISTS'],
    ['bad mode', 'POST', '/networks', { name: 'n1', mode: 'bridge' }, 400, 'INVALID_REQUEST'],
    ['rm default', 'DELETE', '/networks/default', undefined, 409, 'INVALID_STATE'],
    ['rm in use', 'DELETE', '/networks/taken', undefined, 409, 'NETWORK_IN_USE'],
    ['unknown network', 'POST', '/vms', vm({ nics: [{ network: 'nosuch' }] }), 404, 'NETWORK_NOT_FOUND'],
    ['duplicate host port', 'POST', '/vms', vm({ publish: [{ hostPort: 47001, guestPort: 22 }] }), 409, 'PORT_IN_USE'],
    [
      'same port twice',
      'POST',
      '/vms',
      vm({
        publish: [
          { hostPort: 47002, guestPort: 22 },
          { hostPort: 47002, guestPort: 23 },
        ],
      }),
      409,
      'PORT_IN_USE',
    ],
    ['port 0', 'POST', '/vms', vm({ publish: [{ hostPort: 0, guestPort: 22 }] }), 400, 'INVALID_REQUEST'],
    ['publish on no NIC', 'POST', '/vms', vm({ nics: [], publish: [{ hostPort: 47003, guestPort: 22 }] }), 400, 'INVALID_CONFIG'],
    [
      'publish on isolated',
      'POST',
      '/vms',
      vm({ nics: [{ network: 'taken' }], publish: [{ hostPort: 47003, guestPort: 22 }] }),
      400,
      'INVALID_CONFIG',
    ],
    ['rate 0', 'POST', '/vms', vm({ nics: [{ network: 'default', rx: { bytesPerSecond: 0 } }] }), 400, 'INVALID_REQUEST'],
    ['negative rate', 'POST', '/vms', vm({ nics: [{ network: 'default', tx: { bytesPerSecond: -5 } }] }), 400, 'INVALID_REQUEST'],
    ['tiny burst', 'POST', '/vms', vm({ nics: [{ rx: { bytesPerSecond: 1e6, burstBytes: 100 } }] }), 400, 'INVALID_REQUEST'],
    ['bad MAC', 'POST', '/vms', vm({ nics: [{ mac: '52:54:00:zz:00:01' }] }), 400, 'INVALID_REQUEST'],
    ['multicast MAC', 'POST', '/vms', vm({ nics: [{ mac: '53:54:00:00:00:01' }] }), 400, 'INVALID_CONFIG'],
    ['live rate 0', 'PATCH', '/vms/holder', { nicRates: [{ nic: 0, rx: { bytesPerSecond: 0 } }] }, 400, 'INVALID_REQUEST'],
    ['no such NIC', 'PATCH', '/vms/holder', { nicRates: [{ nic: 3, rx: { bytesPerSecond: 1e6 } }] }, 400, 'INVALID_CONFIG'],
  ];
  for (const [what, method, path, body, want, code] of cases) {
    const r = await status(method, path, body);
    assert.equal(r.status, want, `${what}: ${r.message}`);
    assert.equal(r.code, code, `${what}: ${r.message}`);
    assert.ok(r.message && r.message.length > 10, `${what}: a message a person can act on`);
  }
  assert.deepEqual(
    snapshotTree(d.home, (rel) => rel.endsWith('console.log') || rel === 'daemon.json'),
    before,
  );

  // The CLI's spelling of the same mistakes is a usage error (exit 2) before any request.
  for (const args of [
    ['create', 'x', '--kernel', kernel, '--nic', 'network=default,rate=0'],
    ['create', 'x', '--kernel', kernel, '--nic', 'rate=2M'],
    ['create', 'x', '--kernel', kernel, '--publish', '80'],
    ['set', 'holder', '--nic-rate', 'fast'],
  ]) {
    const r = await runCli(d.home, args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
  }
  await d.client.json('DELETE', '/vms/holder?force=true');
  await d.client.json('DELETE', '/networks/taken');
});

test('a host port in use refuses the start with 409 and leaves the VM stopped', TIMEOUT, async () => {
  const blocker: Server = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  const port = (blocker.address() as AddressInfo).port;
  try {
    await d.client.json('POST', '/vms', { name: 'blocked', kernel, publish: [{ hostPort: port, guestPort: 80 }] });
    const r = await status('POST', '/vms/blocked/actions/start', {});
    assert.equal(r.status, 409, r.message);
    assert.equal(r.code, 'PORT_IN_USE');
    assert.match(r.message!, new RegExp(`127\\.0\\.0\\.1:${port}/tcp is already in use`));
    assert.equal((await d.client.json<VmView>('GET', '/vms/blocked')).state, 'defined');
    // Nothing of the refused start runs on: its network failed while its VM process was still coming up.
    assert.deepEqual(await processesTitled('typevisor-vm blocked'), [], 'no VM process is left behind');
    // Once the port is free the same VM starts, and its NIC shows in the stats.
    await new Promise<void>((r) => blocker.close(() => r()));
    await d.client.json('POST', '/vms/blocked/actions/start', {});
    const net = await d.client.json<NetworkView>('GET', '/networks/default');
    assert.equal(net.running, true);
    assert.deepEqual(net.vms, ['blocked']);
  } finally {
    blocker.close();
    await d.client.json('DELETE', '/vms/blocked?force=true');
  }
  // The network stops with its last VM.
  assert.equal((await d.client.json<NetworkView>('GET', '/networks/default')).running, false);
});

test('NIC limits are set at create and changed live; the record keeps them', TIMEOUT, async () => {
  const made = await runCli(d.home, [
    'create',
    'limited',
    '--kernel',
    kernel,
    '--nic',
    'network=default,rate=2M,burst=256K,offload=off',
  ]);
  assert.equal(made.status, 0, made.stderr);
  let vm = await d.client.json<VmView>('GET', '/vms/limited');
  assert.equal(vm.config.nics![0]!.offload, false, 'offload=off is kept in the record');
  assert.deepEqual(vm.config.nics![0]!.rx, { bytesPerSecond: 2 * 2 ** 20, burstBytes: 256 * 1024 });
  assert.deepEqual(vm.config.nics![0]!.tx, vm.config.nics![0]!.rx);
  assert.match(vm.config.nics![0]!.mac, /^52:54:00(:[0-9a-f]{2}){3}$/);
  await d.client.json('POST', '/vms/limited/actions/start', {});
  const set = await runCli(d.home, ['set', 'limited', '--nic-rate', 'rx=4M,tx=none']);
  assert.equal(set.status, 0, set.stderr);
  vm = await d.client.json<VmView>('GET', '/vms/limited');
  assert.deepEqual(vm.config.nics![0]!.rx, { bytesPerSecond: 4 * 2 ** 20 });
  assert.equal(vm.config.nics![0]!.tx, undefined);
  await d.client.json('DELETE', '/vms/limited?force=true');
});

test('a network starts in a worker the daemon kept ready, and the pool refills behind it', TIMEOUT, async () => {
  type Pools = { networkWorkers: HostInfo['daemon']['networkWarmPool'] };
  const pools = async (): Promise<Pools> => ({
    networkWorkers: (await d.client.json<HostInfo>('GET', '/host')).daemon.networkWarmPool,
  });
  const until = async (what: string, ok: (p: Pools) => boolean) => {
    for (let i = 0; i < 300; i++) {
      const p = await pools();
      if (ok(p)) return p;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`the network worker pool never had ${what}: ${JSON.stringify(await pools())}`);
  };
  const before = await until('a worker ready', (p) => p.networkWorkers?.idle === 1);
  assert.equal(before.networkWorkers!.size, 1);
  await d.client.json('POST', '/vms', { name: 'pooled', kernel, nics: [{ network: 'default' }] });
  await d.client.json('POST', '/vms/pooled/actions/start', {});
  try {
    const net = await d.client.json<NetworkView>('GET', '/networks/default');
    assert.equal(net.running, true);
    assert.deepEqual(net.vms, ['pooled']);
    const after = await until(
      'its worker taken and another ready',
      (p) => p.networkWorkers!.idle === 1 && p.networkWorkers!.hits > before.networkWorkers!.hits,
    );
    assert.equal(after.networkWorkers!.misses, before.networkWorkers!.misses, 'the start found a worker ready');
    const host = await runCli(d.home, ['host']);
    assert.match(host.stdout, /^net pool {2}1 of 1 idle; \d+ network starts took one, \d+ found none$/m);
  } finally {
    await d.client.json('DELETE', '/vms/pooled?force=true');
  }
  assert.equal((await d.client.json<NetworkView>('GET', '/networks/default')).running, false);
});
