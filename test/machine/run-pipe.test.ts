/**
 * `typevisor run | head`: when the console's reader goes away, run stops the guest and exits like a program
 * killed by SIGPIPE, without an unhandled EPIPE.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliArgs, repoRoot } from '../helpers/paths.js';

test('run stops the guest and exits 141 when its stdout reader closes', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tv-pipe-'));
  const obj = join(dir, 'chatter.o');
  const elf = join(dir, 'chatter.elf');
  execFileSync('riscv64-linux-gnu-as', ['-march=rv64imac_zicsr', '-o', obj, join(repoRoot, 'test/machine/programs/chatter.S')]);
  execFileSync('riscv64-linux-gnu-ld', ['-N', '--no-warn-rwx-segments', '-Ttext=0x80000000', '-o', elf, obj]);

  const child = spawn(process.execPath, cliArgs('run', '--firmware', 'none', '--kernel', elf, '--no-virtio'), {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const firstOutput = await new Promise<string>((resolve) => child.stdout.once('data', (b: Buffer) => resolve(b.toString())));
  assert.match(firstOutput, /chatter/);
  child.stdout.destroy(); // the reader goes away, as `head` does
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  assert.equal(code, 141, `exit ${code}, stderr: ${stderr}`);
  assert.doesNotMatch(stderr, /EPIPE|Unhandled|at .*\(/);
});
