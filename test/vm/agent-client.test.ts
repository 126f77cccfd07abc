/**
 * The guest agent client without a guest: its parser against malformed, oversized and interleaved lines
 * (fast-check), the request encoding (checked by running the generated sh with dash), and the client's id
 * matching, concurrency, timeouts, cancel, readiness and flow control against a scripted fake agent.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import {
  AgentClient,
  AgentError,
  AgentLineReader,
  AgentLineTooLongError,
  AgentProtocolError,
  BODY_LINE_BYTES,
  commandScript,
  envScript,
  execRequestLines,
  MalformedAgentReplyError,
  parseAgentLine,
  UnknownAgentReplyError,
  type AgentProtocolError as ProtocolErrorType,
  type ExecResult,
} from '../../src/vm/agent-client.js';

const b64 = (s: string | Uint8Array) => (s.length === 0 ? '-' : Buffer.from(s).toString('base64'));
const text = (u: Uint8Array) => Buffer.from(u).toString('utf8');

describe('parseAgentLine', () => {
  it('parses every reply kind', () => {
    assert.deepEqual(parseAgentLine('ready'), { kind: 'ready' });
    assert.deepEqual(parseAgentLine('pong'), { kind: 'pong', id: undefined });
    assert.deepEqual(parseAgentLine('pong 17'), { kind: 'pong', id: '17' });
    assert.deepEqual(parseAgentLine('ok shutdown'), { kind: 'ok', what: 'shutdown' });
    assert.deepEqual(parseAgentLine('error 4 no-such-cwd'), { kind: 'error', id: '4', reason: 'no-such-cwd' });
    assert.deepEqual(parseAgentLine('error - unknown-command'), { kind: 'error', id: undefined, reason: 'unknown-command' });
    const r = parseAgentLine(`exec-result 9 3 stderr ${b64('out')} ${b64('err')}\r`);
    assert.equal(r.kind, 'exec-result');
    if (r.kind !== 'exec-result') return;
    assert.deepEqual([r.id, r.status, r.truncated], ['9', 3, { stdout: false, stderr: true }]);
    assert.deepEqual([text(r.stdout), text(r.stderr)], ['out', 'err']);
    const empty = parseAgentLine('exec-result 1 0 - - -');
    assert.ok(empty.kind === 'exec-result' && empty.stdout.length === 0 && empty.stderr.length === 0);
  });

  it('names what is wrong with a malformed line', () => {
    const cases: [string, new (...a: never[]) => ProtocolErrorType, RegExp][] = [
      ['hello', UnknownAgentReplyError, /unknown guest agent reply "hello"/],
      ['', UnknownAgentReplyError, /unknown/],
      ['ready now', MalformedAgentReplyError, /unexpected fields/],
      ['pong a b', MalformedAgentReplyError, /unexpected fields/],
      ['pong a/b', MalformedAgentReplyError, /bad id/],
      ['ok maybe', MalformedAgentReplyError, /ok shutdown\|reboot/],
      ['error 1', MalformedAgentReplyError, /expected error/],
      ['error 1 BAD!', MalformedAgentReplyError, /bad reason/],
      ['exec-result 1 0 - -', MalformedAgentReplyError, /expected 6 fields/],
      [`exec-result ${'x'.repeat(33)} 0 - - -`, MalformedAgentReplyError, /bad id/],
      ['exec-result 1 256 - - -', MalformedAgentReplyError, /bad exit status/],
      ['exec-result 1 -1 - - -', MalformedAgentReplyError, /bad exit status/],
      ['exec-result 1 0 both - -', MalformedAgentReplyError, /truncated/],
      ['exec-result 1 0 - abc -', MalformedAgentReplyError, /stdout is not base64/],
      ['exec-result 1 0 - - ab$=', MalformedAgentReplyError, /stderr is not base64/],
      ['exec-result 1 0 - - a===', MalformedAgentReplyError, /stderr is not base64/],
    ];
    for (const [line, type, message] of cases) {
      assert.throws(
        () => parseAgentLine(line),
        (e: unknown) => e instanceof type && message.test((e as Error).message),
        line,
      );
    }
  });

  it('turns any line into a reply or an AgentProtocolError, never anything else', () => {
    const word = fc.constantFrom('ready', 'pong', 'ok', 'error', 'exec-result', 'shutdown', '');
    const field = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('-', '0', '255', '7', 'stdout', 'AAAA', 'QQ=='));
    fc.assert(
      fc.property(word, fc.array(field, { maxLength: 7 }), fc.string({ maxLength: 40 }), (w, fields, junk) => {
        for (const line of [[w, ...fields].join(' '), junk]) {
          try {
            parseAgentLine(line);
          } catch (err) {
            if (!(err instanceof AgentProtocolError)) throw err;
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('exec-result carries any bytes exactly', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 3000 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.integer({ min: 0, max: 255 }),
        (out, err, status) => {
          const r = parseAgentLine(`exec-result abc ${status} - ${b64(out)} ${b64(err)}`);
          assert.ok(r.kind === 'exec-result');
          assert.deepEqual(
            [r.status, Buffer.from(r.stdout), Buffer.from(r.stderr)],
            [status, Buffer.from(out), Buffer.from(err)],
          );
        },
      ),
    );
  });
});

describe('AgentLineReader', () => {
  it('yields the same lines however the stream is cut', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({ maxLength: 50 }).map((s) => s.replace(/\n/g, '')),
          { maxLength: 20 },
        ),
        fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 10 }),
        (lines, cuts) => {
          const stream = Buffer.from(lines.map((l) => `${l}\n`).join(''), 'latin1');
          const got: string[] = [];
          const reader = new AgentLineReader(
            (l) => got.push(l),
            (e) => assert.fail(e),
          );
          let at = 0;
          for (let i = 0; at < stream.length; i++) {
            const n = cuts[i % cuts.length]!;
            reader.push(stream.subarray(at, at + n));
            at += n;
          }
          assert.deepEqual(
            got,
            lines.map((l) => Buffer.from(l, 'latin1').toString('latin1')),
          );
        },
      ),
    );
  });

  it('drops an oversized line once, whatever its chunking, and keeps the lines around it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 11, max: 400 }), fc.integer({ min: 1, max: 64 }), (big, chunk) => {
        const got: string[] = [];
        const errors: AgentProtocolError[] = [];
        const reader = new AgentLineReader(
          (l) => got.push(l),
          (e) => errors.push(e),
          10,
        );
        const stream = Buffer.from(`before\n${'x'.repeat(big)}\nafter\n0123456789\n`);
        for (let at = 0; at < stream.length; at += chunk) reader.push(stream.subarray(at, at + chunk));
        assert.deepEqual(got, ['before', 'after', '0123456789']);
        assert.equal(errors.length, 1);
        assert.ok(errors[0] instanceof AgentLineTooLongError);
      }),
    );
  });
});

describe('request encoding', () => {
  it('keeps every request line under the guest tty line limit and splits sections on 3-byte boundaries', () => {
    const stdin = new Uint8Array(BODY_LINE_BYTES * 3 + 5).map((_, i) => i);
    const lines = execRequestLines('42', { argv: ['cat'], stdin, cwd: '/tmp', env: { A: 'b' }, timeoutMs: 1 });
    assert.equal(lines[0], 'exec 42 1 1 1 4');
    assert.ok(lines.every((l) => l.length < 4095));
    assert.ok(lines.slice(1).every((l) => /^[A-Za-z0-9+/]+={0,2}$/.test(l)));
    assert.ok(
      lines.slice(4, -1).every((l) => !l.includes('=')),
      'only the last line of a section is padded',
    );
    assert.equal(Buffer.from(lines[1]!, 'base64').toString(), "'cat'\n");
    assert.equal(Buffer.from(lines[2]!, 'base64').toString(), '/tmp');
    assert.equal(Buffer.from(lines[3]!, 'base64').toString(), "export A='b'\n");
    assert.deepEqual(Buffer.from(lines.slice(4).join(''), 'base64'), Buffer.from(stdin));
  });

  it('the command and env scripts give sh back exactly the argv and values (checked with dash)', () => {
    const arg = fc
      .string({ unit: 'binary', maxLength: 20 })
      .filter((s) => !LONE_SURROGATE.test(s))
      .map((s) => s.replace(/\0/g, ''));
    fc.assert(
      fc.property(fc.array(arg, { minLength: 1, maxLength: 6 }), arg, (args, value) => {
        const script = envScript({ V: value }) + commandScript(['printf', '%s\\0', ...args, value]) + 'printf "%s" "$V"';
        const r = spawnSync('dash', ['-c', script], { encoding: 'buffer' });
        assert.equal(r.status, 0, r.stderr.toString());
        const want = Buffer.from([...args, value].map((a) => `${a}\0`).join('') + value);
        assert.deepEqual(r.stdout, want);
      }),
      { numRuns: 60 },
    );
  });
});

/** A scripted agent on the far side of the transport: records requests, answers when the test says. */
class FakeAgent {
  readonly written: string[] = [];
  backlogBytes = 0;
  private partial = '';
  private expecting = 0;
  readonly requests: { id: string; header: string; body: string[] }[] = [];
  readonly plain: string[] = [];
  readonly client: AgentClient;
  readonly protocolErrors: ProtocolErrorType[] = [];
  answerPings = true;

  constructor() {
    this.client = new AgentClient(
      {
        write: (t) => this.onWrite(t),
        backlog: () => this.backlogBytes,
      },
      { onProtocolError: (e) => this.protocolErrors.push(e) },
    );
  }

  private onWrite(t: string): void {
    this.written.push(t);
    const lines = (this.partial + t).split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) {
      if (this.expecting > 0) {
        this.requests.at(-1)!.body.push(line);
        this.expecting--;
        continue;
      }
      const f = line.split(' ');
      if (f[0] === 'exec') {
        this.requests.push({ id: f[1]!, header: line, body: [] });
        this.expecting = f.slice(2).reduce((a, b) => a + Number(b), 0);
      } else {
        this.plain.push(line);
        if (f[0] === 'ping' && this.answerPings) queueMicrotask(() => this.say(f[1] ? `pong ${f[1]}` : 'pong'));
      }
    }
  }

  say(line: string): void {
    this.client.receive(Buffer.from(`${line}\n`));
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('AgentClient', () => {
  it('matches results to concurrent requests whatever the reply order, chunking and noise', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc
          .integer({ min: 1, max: 8 })
          .chain((n) => fc.tuple(fc.constant(n), fc.shuffledSubarray([...Array(n).keys()], { minLength: n, maxLength: n }))),
        fc.array(fc.constantFrom('garbage', 'exec-result 999 0 - - -', 'pong 12345', 'error 77 busy', 'ok reboot', ''), {
          maxLength: 5,
        }),
        fc.integer({ min: 1, max: 97 }),
        async ([n, order], noise, chunk) => {
          const agent = new FakeAgent();
          agent.say('ready');
          const runs = [...Array(n).keys()].map((i) => agent.client.exec({ argv: ['echo', `run${i}`], timeoutMs: 10_000 }));
          await sleep(0);
          assert.equal(agent.requests.length, n);
          let stream = '';
          for (const [k, i] of order.entries()) {
            const id = agent.requests[i]!.id;
            stream += `exec-result ${id} ${i} - ${b64(`out ${i}`)} ${b64(`err ${i}`)}\n`;
            if (noise[k]) stream += `${noise[k]}\n`;
          }
          const bytes = Buffer.from(stream);
          for (let at = 0; at < bytes.length; at += chunk) agent.client.receive(bytes.subarray(at, at + chunk));
          const results: ExecResult[] = await Promise.all(runs);
          for (const [i, r] of results.entries()) {
            assert.deepEqual([r.exitCode, text(r.stdout), text(r.stderr), r.truncated], [i, `out ${i}`, `err ${i}`, false]);
          }
          assert.equal(agent.client.stats().inFlight, 0);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('counts replies for unknown ids and malformed lines without disturbing requests', async () => {
    const agent = new FakeAgent();
    agent.say('ready');
    const run = agent.client.exec({ argv: ['true'], timeoutMs: 5_000 });
    await sleep(0);
    agent.say('exec-result 424242 0 - - -');
    agent.say('exec-result 1 0 - QQ= -');
    agent.say(`exec-result ${agent.requests[0]!.id} 0 stdout,stderr ${b64('x')} -`);
    const r = await run;
    assert.deepEqual([text(r.stdout), r.truncated], ['x', true]);
    assert.deepEqual(agent.client.stats(), { malformedLines: 1, unknownIds: 1, inFlight: 0 });
    assert.ok(agent.protocolErrors[0] instanceof MalformedAgentReplyError);
  });

  it('waits for the agent, probing with pings, before sending a request', async () => {
    const agent = new FakeAgent();
    agent.answerPings = false;
    const run = agent.client.exec({ argv: ['true'], timeoutMs: 5_000 });
    await sleep(20);
    assert.equal(agent.requests.length, 0);
    assert.deepEqual(agent.plain, ['ping']);
    agent.say('pong');
    await sleep(0);
    assert.equal(agent.requests.length, 1);
    agent.say(`exec-result ${agent.requests[0]!.id} 0 - - -`);
    assert.equal((await run).exitCode, 0);
  });

  it('fails with not-ready when the agent never answers, and with timeout (and a cancel) when the command runs too long', async () => {
    const silent = new FakeAgent();
    silent.answerPings = false;
    await assert.rejects(silent.client.exec({ argv: ['true'], timeoutMs: 50 }), (e: unknown) => {
      return e instanceof AgentError && e.failure === 'not-ready' && /did not answer within 50 ms/.test(e.message);
    });
    assert.equal(silent.requests.length, 0);

    const agent = new FakeAgent();
    agent.say('ready');
    await assert.rejects(
      agent.client.exec({ argv: ['sleep', '100'], timeoutMs: 50 }),
      (e: unknown) => e instanceof AgentError && e.failure === 'timeout' && /did not finish within 50 ms/.test(e.message),
    );
    const id = agent.requests[0]!.id;
    assert.deepEqual(agent.plain, [`cancel ${id}`]);
    agent.say(`exec-result ${id} 137 - - -`); // the late answer is dropped
    assert.equal(agent.client.stats().unknownIds, 1);
    const ping = await agent.client.ping(1_000);
    assert.ok(ping >= 0);
  });

  it('fails requests in flight when the guest reboots, the agent restarts or the client closes', async () => {
    const agent = new FakeAgent();
    agent.say('ready');
    const a = agent.client.exec({ argv: ['a'], timeoutMs: 5_000 });
    await sleep(0);
    agent.client.reset('the guest rebooted');
    await assert.rejects(a, (e: unknown) => e instanceof AgentError && e.failure === 'gone' && /rebooted/.test(e.message));

    agent.say('ready');
    const b = agent.client.exec({ argv: ['b'], timeoutMs: 5_000 });
    await sleep(0);
    agent.say('ready');
    await assert.rejects(b, (e: unknown) => e instanceof AgentError && e.failure === 'gone' && /restarted/.test(e.message));

    const c = agent.client.exec({ argv: ['c'], timeoutMs: 5_000 });
    await sleep(0);
    agent.client.close('the VM was stopped');
    await assert.rejects(c, (e: unknown) => e instanceof AgentError && e.failure === 'gone' && /stopped/.test(e.message));
    await assert.rejects(agent.client.exec({ argv: ['d'], timeoutMs: 5_000 }), /stopped/);
  });

  it('refuses what sh cannot carry before sending anything', async () => {
    const agent = new FakeAgent();
    agent.say('ready');
    for (const [req, msg] of [
      [{ argv: [] }, /name a command/],
      [{ argv: ['a\0b'] }, /NUL/],
      [{ argv: ['ls'], env: { 'A-B': 'x' } }, /env name/],
      [{ argv: ['ls'], cwd: 'relative' }, /absolute/],
    ] as const) {
      await assert.rejects(
        agent.client.exec({ ...req, timeoutMs: 1_000 } as never),
        (e: unknown) => e instanceof AgentError && e.failure === 'invalid' && msg.test(e.message),
      );
    }
    assert.equal(agent.written.length, 0);
  });

  it('an agent error for a request rejects it with the reason', async () => {
    const agent = new FakeAgent();
    agent.say('ready');
    const run = agent.client.exec({ argv: ['pwd'], cwd: '/nope', timeoutMs: 5_000 });
    await sleep(0);
    agent.say(`error ${agent.requests[0]!.id} no-such-cwd`);
    await assert.rejects(run, (e: unknown) => e instanceof AgentError && e.failure === 'refused' && e.reason === 'no-such-cwd');
  });

  it('writes only while the guest keeps up, and never interleaves two requests', async () => {
    const agent = new FakeAgent();
    agent.say('ready');
    agent.backlogBytes = 1 << 20;
    const big = new Uint8Array(300 * 1024).fill(7);
    const one = agent.client.exec({ argv: ['cat'], stdin: big, timeoutMs: 5_000 });
    const two = agent.client.exec({ argv: ['true'], timeoutMs: 5_000 });
    await sleep(10);
    assert.equal(agent.written.length, 0, 'nothing is written while the guest has a backlog');
    agent.backlogBytes = 0;
    await sleep(50);
    assert.equal(agent.requests.length, 2);
    assert.deepEqual(Buffer.from(agent.requests[0]!.body.slice(1).join(''), 'base64'), Buffer.from(big));
    for (const r of agent.requests) agent.say(`exec-result ${r.id} 0 - - -`);
    await Promise.all([one, two]);
  });
});
