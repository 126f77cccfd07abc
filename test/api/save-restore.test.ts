/**
 * `typevisor save` / `typevisor restore` with a real Linux guest through the daemon and the CLI: a counter
 * process, a file in tmpfs and one on the (qcow2) disk are saved; after both files change in the original, the
 * restored copy has them as saved, its counter continues, its uptime is continuous and its console answers.
 * Corrupt and truncated saves are refused naming the bad section, leave no VM behind and crash nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { StateOutcome, VmView } from '../../src/host/actions.js';
import { guestsBuilt } from '../../src/guests/index.js';
import { cliArgs } from '../helpers/paths.js';
import { VmConsole } from '../helpers/vm-console.js';
import { removeHome, startDaemonProcess, waitFor } from '../host/daemon-harness.js';

const run = promisify(execFile);

async function cli(home: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, cliArgs(...args, '--home', home), { timeout: 300_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

test(
  'save and restore a running Linux VM: files, counter, uptime, console; corrupt saves refused',
  { timeout: 1_200_000 },
  async (t) => {
    assert.ok(guestsBuilt(), 'guest images not built: run `typevisor guest build`');
    const d = await startDaemonProcess({ runtime: 'machine' });
    t.after(async () => {
      await d.stop();
      removeHome(d.home);
    });
    const get = (n: string) => d.client.json<VmView>('GET', `/vms/${n}`);
    await d.client.json('POST', '/vms', { name: 'src', memoryMiB: 256 });
    await d.client.json('POST', '/vms/src/actions/start', {});
    const marker = (await get('src')).bootMarker!;
    await waitFor(
      'boot',
      async () => ((await d.client.text('/vms/src/console.log')).toString('latin1').includes(marker) ? true : undefined),
      600_000,
      500,
    );
    const src = await VmConsole.open(d.client, 'src');
    t.after(() => src.close());
    await src.sh('true');
    await src.sh('{ (i=0; while :; do echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; i=$((i+1)); sleep 0.1; done) >/dev/null 2>&1 & }');
    await src.sh('echo tmpfs-saved > /tmp/a; echo disk-saved > /root/b; sync');
    await new Promise((r) => setTimeout(r, 1000));
    const [uptimeSaved, countSaved] = (await src.sh('cut -d" " -f1 /proc/uptime; cat /tmp/count')).trim().split('\n').map(Number);

    const saveDir = join(d.home, 'save1');
    const saved = await cli(d.home, 'save', 'src', saveDir, '--json');
    assert.equal(saved.code, 0, saved.stderr);
    const out = JSON.parse(saved.stdout) as StateOutcome;
    t.diagnostic(
      `save: ${(out.stateBytes / 2 ** 20).toFixed(1)} MiB state, ${out.ramChunks} chunks, worker ${out.workerMs.toFixed(0)} ms, total ${out.totalMs.toFixed(0)} ms`,
    );
    assert.deepEqual(readdirSync(saveDir).sort(), ['disk0.qcow2', 'machine.tvstate', 'manifest.json']);
    assert.equal(out.vm.state, 'running');

    // The original runs on and changes both files.
    await src.sh('echo tmpfs-changed > /tmp/a; echo disk-changed > /root/b; sync');

    const restored = await cli(d.home, 'restore', saveDir, '--name', 'copy', '--json');
    assert.equal(restored.code, 0, restored.stderr);
    const r = JSON.parse(restored.stdout) as StateOutcome;
    t.diagnostic(`restore: worker ${r.workerMs.toFixed(0)} ms, total ${r.totalMs.toFixed(0)} ms`);
    assert.equal((await get('copy')).state, 'running');
    const copy = await VmConsole.open(d.client, 'copy');
    t.after(() => copy.close());
    // The shell was waiting for input at save time: a newline gets a fresh prompt.
    const [uptimeCopy, countCopy, a, b] = (await copy.sh('cut -d" " -f1 /proc/uptime; cat /tmp/count; cat /tmp/a; cat /root/b'))
      .trim()
      .split('\n');
    assert.equal(a, 'tmpfs-saved');
    assert.equal(b, 'disk-saved');
    assert.ok(Number(countCopy) >= countSaved!, `counter ${countSaved} -> ${countCopy}`);
    assert.ok(
      Number(uptimeCopy) >= uptimeSaved! && Number(uptimeCopy) < uptimeSaved! + 120,
      `uptime ${uptimeSaved} -> ${uptimeCopy}`,
    );
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(Number((await copy.sh('cat /tmp/count')).trim()) > Number(countCopy), 'the counter runs on in the copy');
    // The original kept its own changes.
    assert.equal((await src.sh('cat /tmp/a; cat /root/b')).trim(), 'tmpfs-changed\ndisk-changed');

    // Corruption: a flipped byte in the header, in RAM, and a truncated file are refused, naming the section.
    const state = join(saveDir, 'machine.tvstate');
    const size = statSync(state).size;
    const cases: [string, (p: string) => void, RegExp][] = [
      ['bad-header', (p) => flip(p, 40), /section 'header'|section header/],
      ['bad-ram', (p) => flip(p, size - 8192), /section 'ram'.*RAM chunk \d+ is corrupt/],
      ['bad-cut', (p) => truncateSync(p, Math.floor(size / 2)), /TRUNCATED/],
    ];
    for (const [name, damage, why] of cases) {
      const dir = join(d.home, name);
      cpSync(saveDir, dir, { recursive: true });
      damage(join(dir, 'machine.tvstate'));
      const res = await cli(d.home, 'restore', dir, '--name', name);
      assert.equal(res.code, 1, `${name}: exit ${res.code} ${res.stderr}`);
      assert.match(res.stderr, why, name);
      assert.match(res.stderr, /BAD_STATE_FILE/);
      assert.equal(existsSync(join(d.home, 'vms', name)), false, `${name} left a VM folder`);
    }
    assert.deepEqual((await d.client.json<{ vms: VmView[] }>('GET', '/vms')).vms.map((v) => `${v.name}:${v.state}`).sort(), [
      'copy:running',
      'src:running',
    ]);
  },
);

function flip(path: string, at: number): void {
  const b = readFileSync(path);
  b[at] ^= 0x5a;
  writeFileSync(path, b);
}
