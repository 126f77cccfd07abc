// @exclusive: measures API latency while guests saturate the host; another test file would skew it
/**
 * The daemon running real machines (src/machine in worker threads) with tiny bare-metal guests:
 * a guest that polls its UART forever (never idles) and one that writes garbage to every device register.
 * Neither may slow the API or disturb the other VMs; pause must really stop a guest.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { ActionOutcome, VmView } from '../../src/host/actions.js';
import { repoRoot } from '../helpers/paths.js';
import { requireTool } from '../helpers/require.js';
import { latencyPercentiles, removeHome, startDaemonProcess, waitFor, type DaemonHandle } from '../host/daemon-harness.js';

let d: DaemonHandle;
const elf: Record<'echo' | 'garbage', string> = { echo: '', garbage: '' };

function build(mode: number, name: string): string {
  const obj = join(d.kernels, `${name}.o`);
  const out = join(d.kernels, `${name}.elf`);
  execFileSync('riscv64-linux-gnu-as', [
    '-march=rv64imac_zicsr',
    '--defsym',
    `MODE=${mode}`,
    '-o',
    obj,
    join(repoRoot, 'test/host/fixtures/bare-guest.S'),
  ]);
  execFileSync('riscv64-linux-gnu-ld', ['-N', '--no-warn-rwx-segments', '-Ttext=0x80000000', '-o', out, obj]);
  return out;
}

before(async () => {
  d = await startDaemonProcess({ runtime: 'machine' });
  requireTool('riscv64-linux-gnu-as', 'binutils-riscv64-linux-gnu');
  elf.echo = build(0, 'echo');
  elf.garbage = build(1, 'garbage');
});
after(async () => {
  await d.stop();
  removeHome(d.home);
});

const get = (n: string) => d.client.json<VmView>('GET', `/vms/${n}`);
const act = (n: string, a: string, body: unknown = {}) => d.client.json<ActionOutcome>('POST', `/vms/${n}/actions/${a}`, body);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test(
  'bare-metal guests: console, pause/resume, isolation from a spinning and a device-hammering guest',
  { timeout: 180_000 },
  async (t) => {
    for (const [name, kernel] of [
      ['echo1', elf.echo],
      ['echo2', elf.echo],
      ['garbage', elf.garbage],
    ] as const) {
      await d.client.json('POST', '/vms', { name, kernel, firmware: 'none', memoryMiB: 32 });
    }
    for (const n of ['echo1', 'echo2', 'garbage']) assert.equal((await act(n, 'start')).vm.state, 'running');
    for (const [n, banner] of [
      ['echo1', 'bare: echo guest up'],
      ['echo2', 'bare: echo guest up'],
      ['garbage', 'bare: garbage guest up'],
    ] as const) {
      await waitFor(
        `${n} banner`,
        async () => ((await d.client.text(`/vms/${n}/console.log`)).toString('latin1').includes(banner) ? true : undefined),
        60_000,
        200,
      );
    }

    // The API stays fast while all three guests run flat out.
    const { p99, rounds } = await latencyPercentiles(() => d.client.json('GET', '/vms'));
    t.diagnostic(`GET /vms with 3 busy machines: ${rounds.join('; ')}`);
    assert.ok(p99 < 50, `p99 ${p99.toFixed(1)} ms`);

    // A guest's console over the WebSocket, with the garbage guest hammering its devices next door.
    const ws = d.client.websocket('/vms/echo2/console');
    const got: Buffer[] = [];
    ws.on('message', (b: Buffer) => got.push(b));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.send('hello-from-the-host');
    await waitFor('echo', () => (Buffer.concat(got).toString().includes('hello-from-the-host') ? true : undefined), 20_000);
    ws.close();

    // Pause: the instruction counter stops and the worker's CPU use drops; the others keep going.
    await get('echo1');
    await sleep(500);
    const running = (await get('echo1')).stats!;
    assert.ok(running.instructionsPerSecond > 0, 'a running guest retires instructions');
    await act('echo1', 'pause');
    await get('echo1');
    await sleep(300);
    const a = (await get('echo1')).stats!;
    const other = (await get('echo2')).stats!.instret;
    await sleep(700);
    const b = (await get('echo1')).stats!;
    t.diagnostic(
      `echo1 running: ${Math.round(running.instructionsPerSecond / 1e6)} MIPS at ${running.cpuPercent} % CPU; paused: ${b.cpuPercent} % CPU`,
    );
    assert.equal(b.instret, a.instret, 'a paused guest retires no instructions');
    assert.ok(b.cpuPercent < 10, `paused worker CPU ${b.cpuPercent} %`);
    assert.ok((await get('echo2')).stats!.instret > other, 'other guests keep running');
    await act('echo1', 'resume');
    await sleep(500);
    assert.ok((await get('echo1')).stats!.instret > b.instret, 'resumed');

    // No guest agent in a bare-metal program: graceful shutdown falls back to force after the timeout.
    const down = await act('echo1', 'shutdown', { timeoutSeconds: 1 });
    assert.equal(down.vm.state, 'stopped');
    assert.equal(down.forced, true);

    const g = await get('garbage');
    t.diagnostic(`garbage guest after the run: ${g.state}${g.stateReason ? ` (${g.stateReason})` : ''}`);
    assert.equal((await get('echo2')).state, 'running', 'the device-hammering guest did not disturb its neighbours');
    for (const n of ['echo1', 'echo2', 'garbage']) await d.client.json('DELETE', `/vms/${n}?force=true`);
  },
);

test(
  'an image-based VM gets a thin qcow2 overlay of the image root filesystem, plus extra disks',
  { timeout: 120_000 },
  async (t) => {
    const { mkdirSync, writeFileSync, copyFileSync, truncateSync } = await import('node:fs');
    const dir = join(d.home, 'images', 'tiny');
    mkdirSync(dir, { recursive: true });
    copyFileSync(elf.echo, join(dir, 'kernel.elf'));
    writeFileSync(join(dir, 'root.img'), '');
    truncateSync(join(dir, 'root.img'), 64 * 1024 * 1024);
    writeFileSync(
      join(dir, 'image.json'),
      JSON.stringify({ kernel: 'kernel.elf', rootfs: 'root.img', marker: 'bare: echo guest up' }),
    );
    const t0 = performance.now();
    const vm = await d.client.json<VmView>('POST', '/vms', {
      name: 'from-image',
      image: 'tiny',
      firmware: 'none',
      memoryMiB: 32,
      disks: [
        { sizeMiB: 16, format: 'raw' },
        { sizeMiB: 8, format: 'qcow2' },
      ],
    });
    const ms = performance.now() - t0;
    t.diagnostic(`create with a 64 MiB base image and two extra disks: ${ms.toFixed(1)} ms`);
    assert.equal(vm.image, 'tiny');
    assert.equal(vm.bootMarker, 'bare: echo guest up');
    assert.deepEqual(
      vm.config.disks.map((x) => [x.path.split('/').pop(), x.format]),
      [
        ['root.qcow2', 'qcow2'],
        ['disk1.raw', 'raw'],
        ['disk2.qcow2', 'qcow2'],
      ],
    );
    const info = JSON.parse(
      execFileSync('qemu-img', ['info', '--output=json', vm.config.disks[0]!.path], { encoding: 'utf8' }),
    ) as {
      format: string;
      'virtual-size': number;
      'backing-filename'?: string;
      'actual-size': number;
    };
    assert.equal(info.format, 'qcow2');
    assert.equal(info['virtual-size'], 64 * 1024 * 1024);
    assert.equal(info['backing-filename'], join(dir, 'root.img'));
    assert.ok(info['actual-size'] < 1024 * 1024, `the overlay is thin (${info['actual-size']} bytes)`);
    // The machine opens the whole chain (virtio-blk over the overlay) and boots.
    await act('from-image', 'start');
    await waitFor(
      'banner',
      async () =>
        (await d.client.text('/vms/from-image/console.log')).toString('latin1').includes('bare: echo guest up')
          ? true
          : undefined,
      60_000,
      200,
    );
    await d.client.json('DELETE', '/vms/from-image?force=true');
  },
);
