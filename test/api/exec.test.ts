/**
 * `typevisor exec` end to end: the real daemon, the real CLI (spawned) and a Linux + busybox guest from the
 * default image, whose agent on /dev/hvc0 runs the commands. Output, exit statuses, stdin, binary safety, large
 * and truncated output, concurrency, timeouts (the command is killed, the VM keeps working), wrong states,
 * unknown VMs and refused bodies (nothing runs). The guest has no NIC, so its init must boot quietly without
 * starting DHCP.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import type { VmView } from '../../src/host/actions.js';
import { cliArgs } from '../helpers/paths.js';
import { removeHome, startDaemonProcess, waitFor, type DaemonHandle } from '../host/daemon-harness.js';

let d: DaemonHandle;
const VM = 'ex';

interface CliRun {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs the CLI (options before `--` go to typevisor, so --home is put right after the verb). */
function cli(args: string[], input?: Buffer): Promise<CliRun> {
  const [verb, ...rest] = args;
  const child = spawn(process.execPath, cliArgs(verb!, '--home', d.home, ...rest), {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, TYPEVISOR_URL: '' },
  });
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  child.stdin.end(input ?? Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`typevisor ${args.join(' ')} did not exit within 300 s; stderr: ${err}`));
    }, 300_000);
    child.once('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

interface ExecAnswer {
  exitCode: number;
  stdout: string;
  stderr: string;
  truncated: boolean;
  durationMs: number;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const consoleText = async () => (await d.client.text(`/vms/${VM}/console.log`)).toString('latin1');

before(async () => {
  d = await startDaemonProcess({ runtime: 'machine' });
  const vm = await d.client.json<VmView>('POST', '/vms', { name: VM, memoryMiB: 192, nics: [] });
  await d.client.json('POST', `/vms/${VM}/actions/start`, {});
  await waitFor('the guest boot', async () => ((await consoleText()).includes(vm.bootMarker!) ? true : undefined), 600_000, 500);
});

after(async () => {
  await d?.stop();
  if (d) removeHome(d.home);
});

test('the guest without a NIC boots quietly: nothing between init starting and the ready marker', async () => {
  const log = await consoleText();
  const init = log.indexOf('Run /sbin/init as init process');
  const marker = log.indexOf('typevisor-guest: ready');
  assert.ok(init >= 0 && marker > init, log.slice(-2000));
  const between = log
    .slice(init, marker)
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() && !/^\[\s*\d+\.\d+\]/.test(l)); // kernel messages may interleave
  assert.deepEqual(between, []);
  const ip = await cli(['exec', VM, '--', 'sh', '-c', 'ls /sys/class/net; ps | grep -c "[u]dhcpc"']);
  assert.equal(ip.stdout.toString(), 'lo\n0\n', ip.stderr);
});

test('stdout, stderr and the exit status come back through the CLI', { timeout: 300_000 }, async () => {
  const hello = await cli(['exec', VM, '--', 'echo', 'hello']);
  assert.deepEqual([hello.status, hello.stdout.toString(), hello.stderr], [0, 'hello\n', '']);

  const three = await cli(['exec', VM, '--', 'sh', '-c', 'echo err >&2; exit 3']);
  assert.deepEqual([three.status, three.stdout.toString(), three.stderr], [3, '', 'err\n']);

  // Arguments arrive as they are: quotes, spaces, $ and newlines reach the command untouched.
  const args = ["it's", 'a b', '$HOME', 'line\nbreak', '*'];
  const printed = await cli(['exec', VM, '--', 'printf', '[%s]', ...args]);
  assert.equal(printed.stdout.toString(), args.map((a) => `[${a}]`).join(''));

  const where = await cli(['exec', VM, '--cwd', '/proc', '-e', 'GREETING=hi there', '--', 'sh', '-c', 'pwd; echo "$GREETING"']);
  assert.deepEqual([where.status, where.stdout.toString()], [0, '/proc\nhi there\n']);

  const missing = await cli(['exec', VM, '--', 'no-such-command']);
  assert.equal(missing.status, 127);
  assert.match(missing.stderr, /not found/);

  const badCwd = await cli(['exec', VM, '--cwd', '/no/such/dir', '--', 'true']);
  assert.equal(badCwd.status, 201);
  assert.match(badCwd.stderr, /cwd "\/no\/such\/dir" is not a directory in the guest \[INVALID_REQUEST\]/);
});

test('stdin round trip and binary-safe output', { timeout: 300_000 }, async () => {
  const input = randomBytes(100_000);
  const cat = await cli(['exec', VM, '-i', '--', 'cat'], input);
  assert.equal(cat.status, 0, cat.stderr);
  assert.ok(cat.stdout.equals(input), 'stdin came back byte for byte');

  const sum = await cli(['exec', VM, '-i', '--', 'sha256sum'], input);
  assert.equal(sum.stdout.toString().split(' ')[0], sha256(input));

  // Random bytes made in the guest: the guest's own checksum matches the bytes we received.
  const rnd = await cli(['exec', VM, '--', 'sh', '-c', 'head -c 4096 /dev/urandom >/tmp/r; sha256sum </tmp/r >&2; cat /tmp/r']);
  assert.equal(rnd.status, 0, rnd.stderr);
  assert.equal(rnd.stdout.length, 4096);
  assert.equal(rnd.stderr.split(' ')[0], sha256(rnd.stdout));
});

test('1 MiB of output arrives intact; more than 8 MiB is cut and reported', { timeout: 600_000 }, async (t) => {
  const t0 = Date.now();
  const mib = await cli([
    'exec',
    VM,
    '--',
    'sh',
    '-c',
    'head -c 1048576 /dev/urandom >/tmp/m; sha256sum </tmp/m >&2; cat /tmp/m',
  ]);
  assert.equal(mib.status, 0, mib.stderr);
  assert.equal(mib.stdout.length, 1048576);
  assert.equal(mib.stderr.split(' ')[0], sha256(mib.stdout));
  t.diagnostic(`1 MiB of output in ${Date.now() - t0} ms`);

  const big = await d.client.json<ExecAnswer>(
    'POST',
    `/vms/${VM}/exec`,
    { argv: ['sh', '-c', 'head -c 9000000 /dev/zero; echo done >&2; exit 5'], timeoutMs: 400_000 },
    500_000,
  );
  const out = Buffer.from(big.stdout, 'base64');
  assert.deepEqual(
    [big.exitCode, big.truncated, out.length, Buffer.from(big.stderr, 'base64').toString()],
    [5, true, 8 * 1024 * 1024, 'done\n'],
  );
  assert.ok(out.every((b) => b === 0));
});

test('four concurrent execs each get their own result', { timeout: 300_000 }, async () => {
  const runs = await Promise.all(
    [1, 2, 3, 4].map((i) => cli(['exec', VM, '--', 'sh', '-c', `sleep 1; echo out-$0; echo err-$0 >&2; exit $0`, String(i)])),
  );
  for (const [k, r] of runs.entries()) {
    const i = k + 1;
    assert.deepEqual([r.status, r.stdout.toString(), r.stderr], [i, `out-${i}\n`, `err-${i}\n`]);
  }
});

test('a timeout kills the command, exits 124, and the VM keeps working', { timeout: 300_000 }, async () => {
  const slow = await cli(['exec', VM, '--timeout', '2', '--', 'sh', '-c', 'sleep 300; echo never']);
  assert.equal(slow.status, 124, slow.stderr);
  assert.match(slow.stderr, /did not finish within 2000 ms \(it was killed\) \[EXEC_TIMEOUT\]/);
  const api = await d.client.raw('POST', `/vms/${VM}/exec`, { argv: ['sleep', '300'], timeoutMs: 1000 });
  assert.equal(api.status, 504);
  assert.equal((JSON.parse(api.body.toString()) as { error: { code: string } }).error.code, 'EXEC_TIMEOUT');
  // The agent still answers, and both sleeps are gone.
  await waitFor(
    'the timed-out commands to be killed',
    async () => {
      const r = await cli(['exec', VM, '--', 'sh', '-c', 'ps | grep -c "[s]leep 300"']);
      return r.status === 1 && r.stdout.toString() === '0\n' ? true : undefined;
    },
    30_000,
    500,
  );
});

test('refused bodies answer 400 and run nothing', { timeout: 300_000 }, async () => {
  const post = async (body: unknown) => {
    const r = await d.client.raw('POST', `/vms/${VM}/exec`, body);
    return { status: r.status, error: (JSON.parse(r.body.toString()) as { error: { code: string; message: string } }).error };
  };
  const cases: [unknown, RegExp][] = [
    [{ argv: [] }, /argv: argv must name a command/],
    [{}, /argv: /],
    [{ argv: [''] }, /argv: argv\[0\] must not be empty/],
    [{ argv: ['touch', '/tmp/ran-nul', 'a\0b'] }, /argv\.2: an argument must not contain NUL characters/],
    [{ argv: ['touch', '/tmp/ran-long', 'x'.repeat(64 * 1024 + 1)] }, /at most 64 KiB/],
    [{ argv: new Array(257).fill('true') }, /at most 256 arguments/],
    [
      { argv: ['touch', '/tmp/ran-stdin'], stdin: randomBytes(9 * 1024 * 1024).toString('base64') },
      /stdin must be at most 8 MiB/,
    ],
    [{ argv: ['touch', '/tmp/ran-b64'], stdin: 'not base64!' }, /stdin must be base64/],
    [{ argv: ['touch', '/tmp/ran-t0'], timeoutMs: 0 }, /timeoutMs: /],
    [{ argv: ['touch', '/tmp/ran-tbig'], timeoutMs: 3_600_001 }, /timeoutMs: /],
    [{ argv: ['touch', '/tmp/ran-tstr'], timeoutMs: '5' }, /timeoutMs: /],
    [{ argv: ['touch', '/tmp/ran-cwd'], cwd: 'tmp' }, /cwd: cwd must be an absolute path/],
    [{ argv: ['touch', '/tmp/ran-env'], env: { 'BAD-NAME': 'x' } }, /env: environment name "BAD-NAME" must match/],
    [{ argv: ['touch', '/tmp/ran-extra'], shell: true }, /Unrecognized key/],
  ];
  for (const [body, message] of cases) {
    const r = await post(body);
    assert.equal(r.status, 400, JSON.stringify(r));
    assert.equal(r.error.code, 'INVALID_REQUEST');
    assert.match(r.error.message, message);
  }
  const ran = await cli(['exec', VM, '--', 'sh', '-c', 'ls /tmp/ran-* 2>/dev/null | wc -l']);
  assert.equal(ran.stdout.toString().trim(), '0');

  const usage = await cli(['exec', VM]);
  assert.equal(usage.status, 202);
  assert.match(usage.stderr, /name a command to run after --/);
});

test('a reboot ends commands in flight; the agent of the new boot answers the next one', { timeout: 900_000 }, async () => {
  const viaApi = d.client.raw('POST', `/vms/${VM}/exec`, { argv: ['sleep', '300'], timeoutMs: 600_000 }, 700_000);
  await new Promise((r) => setTimeout(r, 2000));
  await d.client.json('POST', `/vms/${VM}/actions/reboot`, {});
  const aborted = await viaApi;
  assert.equal(aborted.status, 409, aborted.body.toString());
  assert.match(aborted.body.toString(), /EXEC_ABORTED/);
  // No waiting for the boot marker: the client probes the new agent until it answers.
  const back = await cli(['exec', VM, '--timeout', '600', '--', 'echo', 'back after the reboot']);
  assert.deepEqual([back.status, back.stdout.toString()], [0, 'back after the reboot\n'], back.stderr);

  // The guest rebooting by itself (busybox reboot signals init) ends the command that asked for it.
  const own = await cli(['exec', VM, '--timeout', '600', '--', 'sh', '-c', 'sleep 1; reboot; sleep 300']);
  assert.equal(own.status, 204, own.stderr);
  assert.match(own.stderr, /the guest rebooted while the request was in flight \[EXEC_ABORTED\]/);
  const again = await cli(['exec', VM, '--timeout', '600', '--', 'cat', '/proc/uptime']);
  assert.equal(again.status, 0, again.stderr);
  assert.ok(Number(again.stdout.toString().split(' ')[0]) < 600, 'a fresh boot');
});

test('an agent that dies is started again; the command in flight fails, the next one runs', { timeout: 300_000 }, async () => {
  const killed = await cli(['exec', VM, '--', 'sh', '-c', 'kill -9 "$(cat /run/typevisor-agent/agent.pid)"; sleep 20']);
  assert.equal(killed.status, 204, killed.stderr);
  assert.match(killed.stderr, /the guest agent restarted while the request was in flight \[EXEC_ABORTED\]/);
  const next = await cli(['exec', VM, '--', 'echo', 'still here']);
  assert.deepEqual([next.status, next.stdout.toString()], [0, 'still here\n'], next.stderr);
});

test('unknown VM, stopped VM, and a shutdown during a command', { timeout: 300_000 }, async () => {
  const unknown = await cli(['exec', 'nosuchvm', '--', 'true']);
  assert.equal(unknown.status, 203);
  assert.match(unknown.stderr, /no VM named 'nosuchvm' \[VM_NOT_FOUND\]/);
  assert.equal((await d.client.raw('POST', '/vms/nosuchvm/exec', { argv: ['true'] })).status, 404);

  const doc = await d.client.json<{ paths: Record<string, unknown> }>('GET', '/openapi.json');
  assert.ok(doc.paths['/vms/{name}/exec']);

  // Stopping the VM ends a running command with a clear error instead of leaving it hanging.
  const running = d.client.raw('POST', `/vms/${VM}/exec`, { argv: ['sleep', '300'], timeoutMs: 200_000 });
  await new Promise((r) => setTimeout(r, 2000));
  // A graceful shutdown: its request to the agent shares the line stream with the exec in flight.
  const down = await d.client.json<{ forced?: boolean; vm: VmView }>('POST', `/vms/${VM}/actions/shutdown`, {
    timeoutSeconds: 120,
  });
  assert.deepEqual([down.forced, down.vm.state], [false, 'stopped']);
  const aborted = await running;
  assert.equal(aborted.status, 409, aborted.body.toString());
  assert.match(aborted.body.toString(), /EXEC_ABORTED/);

  const stopped = await cli(['exec', VM, '--', 'echo', 'hi']);
  assert.equal(stopped.status, 204);
  assert.match(stopped.stderr, /cannot run a command in a VM that is stopped; start it first \[INVALID_STATE\]/);
  assert.equal((await d.client.raw('POST', `/vms/${VM}/exec`, { argv: ['true'] })).status, 409);
});
