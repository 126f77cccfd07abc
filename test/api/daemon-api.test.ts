// @exclusive: measures API latency while guests saturate the host; another test file would skew it
/**
 * The REST API through real HTTP against a real daemon process. VMs run the toy runtime (test/host/fixtures),
 * so these tests cover the daemon, lifecycle, worker plumbing, persistence and validation without a guest.
 */
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { ActionOutcome, VmView } from '../../src/host/actions.js';
import { ClientError } from '../../src/cli/client.js';
import {
  latencyPercentiles,
  removeHome,
  snapshotTree,
  startDaemonProcess,
  toyKernel,
  waitFor,
  type DaemonHandle,
} from '../host/daemon-harness.js';

const TIMEOUT = { timeout: 60_000 };

let d: DaemonHandle;
let kernel: string;

async function create(name: string, extra: Record<string, unknown> = {}): Promise<VmView> {
  return d.client.json<VmView>('POST', '/vms', { name, kernel, ...extra });
}
async function act(name: string, action: string, body: unknown = {}): Promise<ActionOutcome> {
  return d.client.json<ActionOutcome>('POST', `/vms/${name}/actions/${action}`, body);
}
async function get(name: string): Promise<VmView> {
  return d.client.json<VmView>('GET', `/vms/${name}`);
}
function onDisk(name: string): { state: string } {
  return JSON.parse(readFileSync(join(d.home, 'vms', name, 'vm.json'), 'utf8')) as { state: string };
}

before(async () => {
  d = await startDaemonProcess();
  kernel = join(d.kernels, 'kernel.bin');
  writeFileSync(kernel, toyKernel());
});
after(async () => {
  await d.client.json<{ vms: VmView[] }>('GET', '/vms').then(
    async ({ vms }) => Promise.all(vms.map((v) => d.client.json('DELETE', `/vms/${v.name}?force=true`))),
    () => {},
  );
  assert.equal(await d.stop(), 0, 'the daemon exits cleanly on SIGTERM');
  removeHome(d.home);
});

describe('daemon API', () => {
  // Whatever a failed test left behind must not leak into the next one.
  afterEach(async () => {
    const { vms } = await d.client.json<{ vms: VmView[] }>('GET', '/vms');
    await Promise.all(vms.map((v) => d.client.json('DELETE', `/vms/${v.name}?force=true`)));
  });

  test('serves an OpenAPI 3 document generated from the request schemas', TIMEOUT, async () => {
    const doc = await d.client.json<{ openapi: string; paths: Record<string, Record<string, unknown>> }>('GET', '/openapi.json');
    assert.match(doc.openapi, /^3\./);
    for (const p of ['/vms', '/vms/{name}', '/vms/{name}/actions/{action}', '/vms/{name}/console', '/host', '/metrics'])
      assert.ok(doc.paths[p], p);
    const post = doc.paths['/vms']!.post as {
      requestBody: {
        content: { 'application/json': { schema: { properties: Record<string, { pattern?: string; maximum?: number }> } } };
      };
    };
    const props = post.requestBody.content['application/json'].schema.properties;
    assert.equal(props.name!.pattern, '^[a-z0-9][a-z0-9-]{0,62}$');
    assert.equal(props.vcpus!.maximum, 8);
  });

  test('bad and hostile requests get the right 4xx and change nothing on disk', TIMEOUT, async () => {
    await create('base', { cmdline: 'toy=idle' });
    const before = snapshotTree(d.home, (rel) => rel.endsWith('console.log') || rel === 'daemon.json');
    const big = { name: 'big', kernel, cmdline: 'x'.repeat(200 * 1024) };
    type Case = [string, string, string, unknown, number, string, Record<string, string>?];
    const cases: Case[] = [
      ['not JSON', 'POST', '/vms', '{"name":', 400, 'INVALID_JSON', { 'content-type': 'application/json' }],
      ['array body', 'POST', '/vms', [], 400, 'INVALID_REQUEST'],
      ['missing name', 'POST', '/vms', { kernel }, 400, 'INVALID_REQUEST'],
      ['traversal in name', 'POST', '/vms', { name: '../etc', kernel }, 400, 'INVALID_REQUEST'],
      ['slash in name', 'POST', '/vms', { name: 'a/b', kernel }, 400, 'INVALID_REQUEST'],
      ['upper case name', 'POST', '/vms', { name: 'Web', kernel }, 400, 'INVALID_REQUEST'],
      ['very long name', 'POST', '/vms', { name: 'a'.repeat(200), kernel }, 400, 'INVALID_REQUEST'],
      ['vcpus as string', 'POST', '/vms', { name: 'x', kernel, vcpus: '2' }, 400, 'INVALID_REQUEST'],
      ['zero vcpus', 'POST', '/vms', { name: 'x', kernel, vcpus: 0 }, 400, 'INVALID_REQUEST'],
      ['fractional vcpus', 'POST', '/vms', { name: 'x', kernel, vcpus: 1.5 }, 400, 'INVALID_REQUEST'],
      ['too many vcpus', 'POST', '/vms', { name: 'x', kernel, vcpus: 64 }, 400, 'INVALID_REQUEST'],
      ['huge memory', 'POST', '/vms', { name: 'x', kernel, memoryMiB: 1e12 }, 400, 'INVALID_REQUEST'],
      ['negative memory', 'POST', '/vms', { name: 'x', kernel, memoryMiB: -1 }, 400, 'INVALID_REQUEST'],
      ['unknown field', 'POST', '/vms', { name: 'x', kernel, evil: true }, 400, 'INVALID_REQUEST'],
      ['relative kernel path', 'POST', '/vms', { name: 'x', kernel: 'vmlinux' }, 400, 'INVALID_PATH'],
      ['kernel path with ..', 'POST', '/vms', { name: 'x', kernel: '/tmp/../etc/passwd' }, 403, 'PATH_NOT_ALLOWED'],
      ['kernel outside the allowed dirs', 'POST', '/vms', { name: 'x', kernel: '/nonexistent/kernel' }, 403, 'PATH_NOT_ALLOWED'],
      ['missing kernel file', 'POST', '/vms', { name: 'x', kernel: kernel + '.missing' }, 400, 'INVALID_PATH'],
      ['firmware is a directory', 'POST', '/vms', { name: 'x', kernel, firmware: d.kernels }, 400, 'INVALID_PATH'],
      ['seven disks', 'POST', '/vms', { name: 'x', kernel, disks: new Array(7).fill({ sizeMiB: 1 }) }, 400, 'INVALID_REQUEST'],
      ['huge disk', 'POST', '/vms', { name: 'x', kernel, disks: [{ sizeMiB: 1e12 }] }, 400, 'INVALID_REQUEST'],
      ['disk without size or backing', 'POST', '/vms', { name: 'x', kernel, disks: [{ format: 'raw' }] }, 400, 'INVALID_CONFIG'],
      [
        'raw disk with backing',
        'POST',
        '/vms',
        { name: 'x', kernel, disks: [{ format: 'raw', backing: 'nope' }] },
        404,
        'IMAGE_NOT_FOUND',
      ],
      ['unknown image', 'POST', '/vms', { name: 'x', image: 'nope' }, 404, 'IMAGE_NOT_FOUND'],
      ['traversal in image', 'POST', '/vms', { name: 'x', image: '../../etc' }, 400, 'INVALID_REQUEST'],
      ['duplicate name', 'POST', '/vms', { name: 'base', kernel }, 409, 'VM_EXISTS'],
      ['huge body', 'POST', '/vms', big, 413, 'BODY_TOO_LARGE'],
      [
        'wrong content type',
        'POST',
        '/vms',
        'name=x',
        415,
        'UNSUPPORTED_MEDIA_TYPE',
        { 'content-type': 'application/x-www-form-urlencoded' },
      ],
      ['traversal in path', 'GET', '/vms/..%2F..%2Fetc', undefined, 400, 'INVALID_NAME'],
      ['dot name in path', 'DELETE', '/vms/..', undefined, 400, 'INVALID_NAME'],
      ['unknown VM', 'GET', '/vms/nope', undefined, 404, 'VM_NOT_FOUND'],
      ['unknown action', 'POST', '/vms/base/actions/fly', {}, 404, 'UNKNOWN_ACTION'],
      ['pause a defined VM', 'POST', '/vms/base/actions/pause', {}, 409, 'INVALID_STATE'],
      ['resume a defined VM', 'POST', '/vms/base/actions/resume', {}, 409, 'INVALID_STATE'],
      ['shutdown a defined VM', 'POST', '/vms/base/actions/shutdown', {}, 409, 'INVALID_STATE'],
      ['reboot a defined VM', 'POST', '/vms/base/actions/reboot', {}, 409, 'INVALID_STATE'],
      ['action body with junk', 'POST', '/vms/base/actions/start', { timeoutSeconds: 'soon' }, 400, 'INVALID_REQUEST'],
      ['empty patch', 'PATCH', '/vms/base', {}, 400, 'INVALID_REQUEST'],
      ['patch with wrong type', 'PATCH', '/vms/base', { memoryMiB: 'lots' }, 400, 'INVALID_REQUEST'],
      ['patch an unknown field', 'PATCH', '/vms/base', { name: 'other' }, 400, 'INVALID_REQUEST'],
      ['negative balloon target', 'PATCH', '/vms/base', { balloonTargetMiB: -1 }, 400, 'INVALID_REQUEST'],
      ['delete with a bad force flag', 'DELETE', '/vms/base?force=maybe', undefined, 400, 'INVALID_REQUEST'],
      ['delete an unknown VM', 'DELETE', '/vms/nope', undefined, 404, 'VM_NOT_FOUND'],
      ['console of an unknown VM', 'GET', '/vms/nope/console.log', undefined, 404, 'VM_NOT_FOUND'],
      ['unknown route', 'GET', '/etc/passwd', undefined, 404, 'NOT_FOUND'],
    ];
    for (const [what, method, path, body, status, code, headers] of cases) {
      const r = await rawRequest(method, path, body, headers);
      assert.equal(r.status, status, `${what}: ${r.text}`);
      const parsed = JSON.parse(r.text) as { error: { code: string; message: string } };
      assert.equal(parsed.error.code, code, `${what}: ${r.text}`);
      assert.ok(parsed.error.message.length > 0, what);
    }
    assert.deepEqual(
      snapshotTree(d.home, (rel) => rel.endsWith('console.log') || rel === 'daemon.json'),
      before,
      'nothing on disk changed',
    );
    assert.deepEqual(await d.client.json('GET', '/healthz'), { ok: true });
    await d.client.json('DELETE', '/vms/base');
  });

  test(
    'lifecycle: start three, console with two viewers, pause stops instructions, resume, reboot, graceful shutdown, delete',
    TIMEOUT,
    async () => {
      for (const n of ['l1', 'l2', 'l3']) await create(n, { cmdline: 'toy=spin', memoryMiB: 64 });
      const started = await Promise.all(['l1', 'l2', 'l3'].map((n) => act(n, 'start')));
      for (const o of started) assert.equal(o.vm.state, 'running');
      for (const n of ['l1', 'l2', 'l3']) assert.equal(onDisk(n).state, 'running');

      // Console: two viewers on l2 see the guest's answer to what one of them typed.
      const viewers = await Promise.all([openConsole('l2'), openConsole('l2')]);
      viewers[0]!.ws.send('uname -a\r');
      await Promise.all(
        viewers.map((v) => waitFor('console echo', () => (v.text().includes('echo: uname -a') ? true : undefined), 5_000)),
      );
      for (const v of viewers) v.ws.close();
      await waitFor(
        'console log',
        async () => ((await d.client.text('/vms/l2/console.log')).toString().includes('echo: uname -a') ? true : undefined),
        5_000,
      );
      assert.match((await d.client.text('/vms/l1/console.log')).toString(), /toy: l1 booted/);

      // Pause l1: its instruction counter stops and its thread's CPU use drops; the others keep running.
      await get('l1');
      await sleep(300);
      assert.ok((await get('l1')).stats!.instructionsPerSecond > 0);
      assert.equal((await act('l1', 'pause')).vm.state, 'paused');
      assert.equal(onDisk('l1').state, 'paused');
      await get('l1');
      await sleep(300);
      const p1 = (await get('l1')).stats!;
      const o1 = (await get('l3')).stats!.instret;
      await sleep(500);
      const p2 = (await get('l1')).stats!;
      assert.equal(p2.instret, p1.instret, 'a paused VM retires no instructions');
      assert.equal(p2.instructionsPerSecond, 0);
      assert.ok(p2.cpuPercent < 10, `paused worker CPU ${p2.cpuPercent} %`);
      assert.ok((await get('l3')).stats!.instret > o1, 'the other VMs keep running');

      const r = await act('l1', 'resume');
      assert.equal(r.vm.state, 'running');
      await sleep(300);
      assert.ok((await get('l1')).stats!.instret > p2.instret, 'resumed VM runs again');

      assert.equal((await act('l1', 'reboot')).vm.state, 'running');
      assert.equal(onDisk('l1').state, 'running');
      // A graceful reboot: the agent is asked, and the action ends when the guest has reset the machine itself.
      const soft = await act('l1', 'reboot', { graceful: true, timeoutSeconds: 60 });
      assert.equal(soft.vm.state, 'running');
      assert.equal(soft.forced, false, 'the guest agent rebooted it');
      await assert.rejects(
        act('l1', 'shutdown', { graceful: true }),
        (e: ClientError) => e.status === 400 && e.code === 'INVALID_REQUEST' && /reboot only/.test(e.message),
      );

      await assert.rejects(
        d.client.json('DELETE', '/vms/l1'),
        (e: ClientError) => e.status === 409 && e.code === 'INVALID_STATE',
      );
      const down = await act('l1', 'shutdown');
      assert.equal(down.vm.state, 'stopped');
      assert.equal(down.forced, false, 'the guest agent powered it off');
      assert.equal(onDisk('l1').state, 'stopped');
      assert.equal(await get('l1').then((v) => v.stats), null);
      assert.deepEqual(await d.client.json('DELETE', '/vms/l1'), { deleted: 'l1' });
      await assert.rejects(get('l1'), (e: ClientError) => e.status === 404);

      // Force stop and forced delete of a running VM.
      assert.equal((await act('l2', 'stop')).vm.state, 'stopped');
      assert.deepEqual(await d.client.json('DELETE', '/vms/l3?force=true'), { deleted: 'l3' });
      await d.client.json('DELETE', '/vms/l2');
    },
  );

  test('a guest that ignores a shutdown or reboot request is stopped or reset by force after the timeout', TIMEOUT, async () => {
    await create('deaf', { cmdline: 'toy=noagent', memoryMiB: 32 });
    await act('deaf', 'start');
    const t1 = Date.now();
    const reset = await act('deaf', 'reboot', { graceful: true, timeoutSeconds: 1 });
    assert.equal(reset.forced, true, 'reset after the timeout');
    assert.equal(reset.vm.state, 'running');
    assert.ok(Date.now() - t1 >= 900);
    const t0 = Date.now();
    const out = await act('deaf', 'shutdown', { timeoutSeconds: 1 });
    assert.equal(out.forced, true);
    assert.equal(out.vm.state, 'stopped');
    assert.ok(Date.now() - t0 >= 900);
    await d.client.json('DELETE', '/vms/deaf');
  });

  test(
    'exec reaches the runtime through the worker; no agent channel, a silent agent and a stop give clear errors',
    TIMEOUT,
    async () => {
      const exec = async (name: string, body: unknown) => {
        const r = await d.client.raw('POST', `/vms/${name}/exec`, body);
        return {
          status: r.status,
          body: JSON.parse(r.body.toString()) as Record<string, unknown> & { error?: { code: string } },
        };
      };
      await create('ex', { cmdline: 'toy=idle', memoryMiB: 32 });
      assert.equal((await exec('ex', { argv: ['echo'] })).body.error?.code, 'INVALID_STATE');
      await act('ex', 'start');
      const ok = await exec('ex', { argv: ['echo', 'a b', 'c'] });
      assert.equal(ok.status, 200);
      assert.deepEqual(
        [ok.body.exitCode, Buffer.from(ok.body.stdout as string, 'base64').toString(), ok.body.truncated],
        [0, 'a b c\n', false],
      );

      await create('mute', { cmdline: 'toy=idle', memoryMiB: 32, virtioConsole: false });
      await act('mute', 'start');
      const mute = await exec('mute', { argv: ['true'] });
      assert.deepEqual([mute.status, mute.body.error?.code], [409, 'AGENT_UNAVAILABLE']);

      await create('deaf', { cmdline: 'toy=noagent', memoryMiB: 32 });
      await act('deaf', 'start');
      const deaf = await exec('deaf', { argv: ['true'], timeoutMs: 300 });
      assert.deepEqual([deaf.status, deaf.body.error?.code], [504, 'EXEC_TIMEOUT']);
      // A command in flight holds up nothing else, and a stop ends it with a clear error.
      const hanging = exec('deaf', { argv: ['true'], timeoutMs: 60_000 });
      assert.equal((await get('deaf')).state, 'running');
      await act('deaf', 'pause');
      await act('deaf', 'stop');
      const ended = await hanging;
      assert.deepEqual([ended.status, ended.body.error?.code], [409, 'EXEC_ABORTED']);
    },
  );

  test('a crashing machine is reported crashed with its reason and can be started again', TIMEOUT, async () => {
    await create('crashy', { cmdline: 'toy=crash', memoryMiB: 32 });
    await act('crashy', 'start');
    const vm = await waitFor(
      'crash',
      async () => ((await get('crashy')).state === 'crashed' ? get('crashy') : undefined),
      10_000,
    );
    assert.match(vm.stateReason ?? '', /deliberate fault/);
    assert.equal(onDisk('crashy').state, 'crashed');
    assert.equal((await act('crashy', 'start')).vm.state, 'running');
    await d.client.json('DELETE', '/vms/crashy?force=true');
  });

  test(
    'a wedged worker and a spinning guest do not slow the API (p99 of GET /vms < 50 ms) and can be stopped',
    TIMEOUT,
    async (t) => {
      await create('wedge', { cmdline: 'toy=wedge', memoryMiB: 32 });
      await create('spin', { cmdline: 'toy=spin', memoryMiB: 32 });
      await create('calm', { cmdline: 'toy=idle', memoryMiB: 32 });
      for (const n of ['wedge', 'spin', 'calm']) await act(n, 'start');
      await sleep(200);
      const { p99, rounds } = await latencyPercentiles(() => d.client.json('GET', '/vms'));
      t.diagnostic(`GET /vms with a wedged and a spinning VM: ${rounds.join('; ')}`);
      assert.ok(p99 < 50, `p99 ${p99.toFixed(1)} ms`);
      // The calm VM still answers its console while the others misbehave.
      const v = await openConsole('calm');
      v.ws.send('still there?\r');
      await waitFor('calm VM echo', () => (v.text().includes('echo: still there?') ? true : undefined), 5_000);
      v.ws.close();
      // Stats of the wedged VM come back (last known figures) instead of hanging the request.
      const w = await get('wedge');
      assert.equal(w.state, 'running');
      assert.ok(w.stats !== null);
      const t0 = Date.now();
      assert.equal((await act('wedge', 'stop')).vm.state, 'stopped');
      assert.ok(Date.now() - t0 < 10_000);
      for (const n of ['wedge', 'spin', 'calm']) await d.client.json('DELETE', `/vms/${n}?force=true`);
    },
  );

  test('PATCH changes machine fields only when stopped; autostart any time', TIMEOUT, async () => {
    await create('p', { cmdline: 'toy=idle', memoryMiB: 32 });
    assert.equal((await d.client.json<VmView>('PATCH', '/vms/p', { memoryMiB: 48, vcpus: 2 })).config.memoryMiB, 48);
    await assert.rejects(
      d.client.json('PATCH', '/vms/p', { balloonTargetMiB: 16 }),
      (e: ClientError) => e.status === 409 && e.code === 'INVALID_STATE',
    );
    await act('p', 'start');
    assert.equal((await d.client.json<VmView>('PATCH', '/vms/p', { balloonTargetMiB: 16 })).state, 'running');
    await assert.rejects(
      d.client.json('PATCH', '/vms/p', { balloonTargetMiB: 48 }),
      (e: ClientError) => e.status === 400 && e.code === 'INVALID_CONFIG',
    );
    await assert.rejects(
      d.client.json('PATCH', '/vms/p', { memoryMiB: 64 }),
      (e: ClientError) => e.status === 409 && e.code === 'INVALID_STATE',
    );
    assert.equal((await d.client.json<VmView>('PATCH', '/vms/p', { autostart: true })).autostart, true);
    const rec = JSON.parse(readFileSync(join(d.home, 'vms', 'p', 'vm.json'), 'utf8')) as {
      autostart: boolean;
      config: { memoryMiB: number; cpus: number };
    };
    assert.deepEqual([rec.autostart, rec.config.memoryMiB, rec.config.cpus], [true, 48, 2]);
    await d.client.json('DELETE', '/vms/p?force=true');
  });

  test('host info and Prometheus metrics', TIMEOUT, async () => {
    await create('m', { cmdline: 'toy=spin', memoryMiB: 32 });
    await act('m', 'start');
    const host = await d.client.json<{
      cpus: number;
      vms: { total: number; byState: Record<string, number> };
      usage: { vcpus: number };
    }>('GET', '/host');
    assert.ok(host.cpus >= 1);
    assert.equal(host.vms.byState.running, 1);
    assert.equal(host.usage.vcpus, 1);
    const text = (await d.client.text('/metrics')).toString();
    assert.match(text, /^# TYPE typevisor_vm_instructions_total counter$/m);
    assert.match(text, /^typevisor_vm_instructions_total\{vm="m"\} \d+$/m);
    assert.match(text, /^typevisor_vm_state\{vm="m",state="running"\} 1$/m);
    assert.match(text, /^typevisor_vm_resident_bytes\{vm="m"\} \d+$/m);
    await d.client.json('DELETE', '/vms/m?force=true');
  });
});

describe('daemon restarts and access', () => {
  test(
    'thread mode: a daemon killed with VMs running comes back with them stopped, and autostart VMs running',
    TIMEOUT,
    async () => {
      // Worker threads die with the daemon (process mode's VMs outlive it: test/host/process-mode.test.ts).
      const a = await startDaemonProcess({ vmMode: 'thread' });
      const k = join(a.kernels, 'k');
      writeFileSync(k, toyKernel());
      try {
        for (const [name, autostart] of [
          ['keep', false],
          ['auto', true],
        ] as const) {
          await a.client.json('POST', '/vms', { name, kernel: k, cmdline: 'toy=idle', memoryMiB: 32, autostart });
          await a.client.json('POST', `/vms/${name}/actions/start`, {});
        }
        await a.client.json('POST', '/vms', { name: 'idle', kernel: k, memoryMiB: 32 });
        await a.stop('SIGKILL');
        const rec = (n: string) =>
          JSON.parse(readFileSync(join(a.home, 'vms', n, 'vm.json'), 'utf8')) as { state: string; stateReason?: string };
        assert.equal(rec('keep').state, 'running', 'the record still says running after the crash');
        const b = await startDaemonProcess({ home: a.home, vmMode: 'thread' });
        try {
          const { vms } = await b.client.json<{ vms: VmView[] }>('GET', '/vms');
          const by = Object.fromEntries(vms.map((v) => [v.name, v]));
          assert.equal(by.keep!.state, 'stopped');
          assert.match(by.keep!.stateReason ?? '', /daemon exited/);
          assert.equal(by.auto!.state, 'running');
          assert.equal(by.idle!.state, 'defined');
          assert.equal(rec('keep').state, 'stopped');
          assert.equal(rec('auto').state, 'running');
          // A clean stop records every VM stopped.
          assert.equal(await b.stop(), 0);
          assert.equal(rec('auto').state, 'stopped');
        } finally {
          await b.stop();
        }
      } finally {
        await a.stop();
        removeHome(a.home);
      }
    },
  );

  test('unix socket and token are mode 0600; TCP needs the bearer token; one daemon per home', TIMEOUT, async () => {
    const a = await startDaemonProcess({ extraArgs: ['--listen', 'tcp:127.0.0.1:0', '--listen', `unix:${join(tmpHomeSock())}`] });
    try {
      const unix = a.addresses.find((x) => x.startsWith('unix:'))!.slice(5);
      const tcp = a.addresses.find((x) => x.startsWith('tcp:'))!.slice(4);
      assert.equal(statSync(unix).mode & 0o777, 0o600);
      const tokenFile = join(a.home, 'token');
      assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
      const token = readFileSync(tokenFile, 'utf8').trim();
      assert.match(token, /^[0-9a-f]{64}$/);
      const url = `http://${tcp}`;
      const noToken = await fetch(`${url}/vms`);
      assert.equal(noToken.status, 401);
      assert.equal(((await noToken.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
      assert.equal((await fetch(`${url}/vms`, { headers: { authorization: `Bearer ${'0'.repeat(64)}` } })).status, 401);
      assert.equal((await fetch(`${url}/vms`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
      // A second daemon on the same home refuses to start.
      const second = await startDaemonProcess({ home: a.home, startTimeoutMs: 20_000 }).then(
        () => 'started',
        (e: Error) => e.message,
      );
      assert.match(second, /another daemon/);
    } finally {
      await a.stop();
      removeHome(a.home);
    }
  });
});

function tmpHomeSock(): string {
  return `/tmp/tv-${process.pid}-${Date.now()}.sock`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function openConsole(name: string): Promise<{ ws: WebSocket; text(): string }> {
  const ws = d.client.websocket(`/vms/${name}/console`);
  const chunks: Buffer[] = [];
  ws.on('message', (b: Buffer) => chunks.push(b));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, text: () => Buffer.concat(chunks).toString('utf8') };
}

async function rawRequest(
  method: string,
  path: string,
  body: unknown,
  headers?: Record<string, string>,
): Promise<{ status: number; text: string }> {
  const { request } = await import('node:http');
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: d.socket,
        path,
        method,
        headers: {
          ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
          ...headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}
