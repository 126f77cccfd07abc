// The guest-side atomics stress program (test/guests/atomic-stress.c, for multi-hart guests later) builds as a
// static RV64 pthreads binary and passes under qemu-riscv64, whose user mode runs guest threads in parallel: the
// program is right, so a FAIL inside a typevisor guest means typevisor's atomics lost an increment.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../helpers/paths.js';
import { requireTool } from '../helpers/require.js';

const LINE = /^ATOMIC-STRESS amoadd=(\d+) lrsc=(\d+) amoadd_w=(\d+) expected=(\d+) (OK|FAIL)$/m;

test('atomic-stress: 4 threads x 1e6 increments of each counter are exact under qemu-riscv64', { timeout: 300_000 }, () => {
  requireTool('riscv64-linux-gnu-gcc', 'gcc-riscv64-linux-gnu');
  requireTool('qemu-riscv64', 'qemu-user', ['-version']);
  const dir = mkdtempSync(join(tmpdir(), 'atomic-stress-'));
  try {
    const bin = join(dir, 'atomic-stress');
    const cc = spawnSync(
      'riscv64-linux-gnu-gcc',
      ['-O2', '-static', '-pthread', '-Wall', '-Wextra', '-Werror', '-o', bin, join(repoRoot, 'test/guests/atomic-stress.c')],
      { encoding: 'utf8' },
    );
    assert.equal(cc.status, 0, `compile failed:\n${cc.stderr}`);
    // The disassembly has the instructions the program is meant to stress.
    const dis = spawnSync('riscv64-linux-gnu-objdump', ['-d', bin], { encoding: 'utf8', maxBuffer: 256 << 20 });
    assert.equal(dis.status, 0, dis.stderr);
    for (const insn of ['amoadd.d', 'lr.d', 'sc.d', 'amoadd.w'])
      assert.match(dis.stdout, new RegExp(`\\s${insn.replace('.', '\\.')}\\s`), insn);

    const run = spawnSync('qemu-riscv64', [bin, '4', '1000000'], { encoding: 'utf8', timeout: 240_000 });
    assert.equal(run.status, 0, `exit ${run.status}:\n${run.stdout}${run.stderr}`);
    const m = LINE.exec(run.stdout);
    assert.ok(m, `no ATOMIC-STRESS line in:\n${run.stdout}`);
    assert.deepEqual(m.slice(1), ['4000000', '4000000', '4000000', '4000000', 'OK']);

    // Bad arguments are refused with a usage error, not run.
    const bad = spawnSync('qemu-riscv64', [bin, '0', '10'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /THREADS must be an integer/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
