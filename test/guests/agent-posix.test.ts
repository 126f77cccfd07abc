/**
 * The guest agent script on a Debian-style userland (dash, coreutils, util-linux) on this host, driven by the
 * real AgentClient over a pseudo-terminal (util-linux `script` provides one, like the guest's /dev/hvc0 tty).
 * This is the compatibility promise of the agent: POSIX sh plus base64, dd, flock, head, setsid, truncate, wc
 * and kill, nothing busybox-only. The busybox guest runs the same protocol in test/api/exec.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentClient, AgentError, type ExecRequest } from '../../src/vm/agent-client.js';
import { repoRoot } from '../helpers/paths.js';

const AGENT = join(repoRoot, 'guests/userland/sbin/typevisor-agent');
let child: ChildProcess;
let client: AgentClient;
let state: string;
const text = (u: Uint8Array) => Buffer.from(u).toString();
const run = (argv: string[], more: Partial<ExecRequest> = {}) => client.exec({ argv, timeoutMs: 30_000, ...more });

before(() => {
  for (const tool of ['dash', 'script', 'flock', 'setsid', 'base64', 'dd', 'truncate']) {
    assert.equal(spawnSync('sh', ['-c', `command -v ${tool}`]).status, 0, `${tool} is needed for this test`);
  }
  state = mkdtempSync(join(tmpdir(), 'tv-agent-'));
  // The agent opens /dev/tty: the pty `script` made its controlling terminal.
  child = spawn('script', ['-qfec', `dash ${AGENT} /dev/tty`, '/dev/null'], {
    env: { ...process.env, TYPEVISOR_AGENT_STATE: join(state, 'agent') },
    stdio: ['pipe', 'pipe', 'inherit'],
    detached: true,
  });
  client = new AgentClient({
    write: (t) => child.stdin!.write(t),
    backlog: () => child.stdin!.writableLength,
  });
  child.stdout!.on('data', (b: Buffer) => client.receive(b));
});

after(() => {
  client.close('test over');
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    /* already gone */
  }
  rmSync(state, { recursive: true, force: true });
});

test('output, exit status, arguments, cwd and env', { timeout: 60_000 }, async () => {
  const hello = await run(['echo', 'hello']);
  assert.deepEqual([hello.exitCode, text(hello.stdout), text(hello.stderr), hello.truncated], [0, 'hello\n', '', false]);
  const three = await run(['sh', '-c', 'echo err >&2; exit 3']);
  assert.deepEqual([three.exitCode, text(three.stdout), text(three.stderr)], [3, '', 'err\n']);
  const args = ["it's", 'a b', '$HOME', 'line\nbreak', '*', 'é'];
  assert.equal(text((await run(['printf', '[%s]', ...args])).stdout), args.map((a) => `[${a}]`).join(''));
  const where = await run(['sh', '-c', 'pwd; echo "$X"'], { cwd: '/tmp', env: { X: "it's here" } });
  assert.equal(text(where.stdout), "/tmp\nit's here\n");
  await assert.rejects(
    run(['true'], { cwd: '/no/such/dir' }),
    (e: unknown) => e instanceof AgentError && e.reason === 'no-such-cwd',
  );
});

test('stdin and binary output round trip byte for byte', { timeout: 60_000 }, async () => {
  const input = randomBytes(300_000);
  const cat = await run(['cat'], { stdin: input });
  assert.ok(Buffer.from(cat.stdout).equals(input));
  const rnd = await run(['sh', '-c', 'head -c 65536 /dev/urandom >"$0"; sha256sum <"$0" >&2; cat "$0"', join(state, 'r')]);
  assert.equal(text(rnd.stderr).split(' ')[0], createHash('sha256').update(rnd.stdout).digest('hex'));
});

test('output past 8 MiB is cut and reported; the command still exits normally', { timeout: 60_000 }, async () => {
  const big = await run(['sh', '-c', 'head -c 9000000 /dev/zero; echo done >&2; exit 4']);
  assert.deepEqual([big.exitCode, big.truncated, big.stdout.length, text(big.stderr)], [4, true, 8 * 1024 * 1024, 'done\n']);
});

test('concurrent commands each get their own result', { timeout: 60_000 }, async () => {
  const results = await Promise.all(
    [1, 2, 3, 4, 5, 6].map((i) => run(['sh', '-c', 'sleep 0.$0; echo $0; exit $0', String(7 - i)])),
  );
  assert.deepEqual(
    results.map((r) => [r.exitCode, text(r.stdout)]),
    [6, 5, 4, 3, 2, 1].map((i) => [i, `${i}\n`]),
  );
});

test('a timed-out command is killed with everything it started; the agent keeps answering', { timeout: 60_000 }, async () => {
  const marker = `tv-agent-test-${process.pid}`;
  await assert.rejects(
    run(['sh', '-c', `sleep 300 & sleep 301; echo ${marker}`], { timeoutMs: 1500 }),
    (e: unknown) => e instanceof AgentError && e.failure === 'timeout',
  );
  assert.ok((await client.ping(5_000)) >= 0);
  // The whole session is gone: no process of that command is left.
  const survivors = () => spawnSync('pgrep', ['-f', `echo ${marker}`], { encoding: 'utf8' }).stdout.trim();
  const deadline = Date.now() + 10_000;
  while (survivors() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  assert.equal(survivors(), '');
  const { unknownIds, inFlight } = client.stats();
  assert.deepEqual({ unknownIds, inFlight }, { unknownIds: 0, inFlight: 0 });
});
