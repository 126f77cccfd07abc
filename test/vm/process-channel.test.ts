/**
 * The VM process channel (src/vm/process-channel.ts) over a real unix socket: every record kind round-trips
 * (control JSON with byte arrays, console bytes, NIC frames with their index, NIC frames with offload metadata up to a
 * 64 KiB GSO super-segment, counters), records split across reads are reassembled, and hostile bytes (unknown
 * kind, oversized length, bad JSON, a NIC record without its index, malformed offload metadata) close the channel
 * with a named ChannelError instead of throwing or buffering without bound.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChannelError, ProcessChannel, type ChannelHandlers } from '../../src/vm/process-channel.js';
import { MAX_GSO_FRAME_BYTES, type FrameOffload } from '../../src/net/packet/offload.js';

interface Received {
  control: Record<string, unknown>[];
  console: Uint8Array[];
  nic: [number, Uint8Array, FrameOffload | undefined][];
  counters: Float64Array[];
  closed?: Error | null;
}

function recorder(onAny: () => void): { got: Received; handlers: ChannelHandlers } {
  const got: Received = { control: [], console: [], nic: [], counters: [] };
  return {
    got,
    handlers: {
      control: (m) => (got.control.push(m), onAny()),
      console: (b) => (got.console.push(b), onAny()),
      nic: (i, f, o) => (got.nic.push([i, f, o]), onAny()),
      counters: (v) => (got.counters.push(v), onAny()),
      close: (err) => ((got.closed = err ?? null), onAny()),
    },
  };
}

async function pair(): Promise<{ client: Socket; server: Socket; done(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'tv-chan-'));
  const path = join(dir, 's.sock');
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(path, r));
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const client = connect(path);
  await new Promise<void>((r) => client.once('connect', () => r()));
  const server = await accepted;
  return {
    client,
    server,
    done: () => {
      client.destroy();
      server.destroy();
      srv.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (cond()) resolve();
      else if (Date.now() > end) reject(new Error('timed out'));
      else setTimeout(check, 5);
    };
    check();
  });
}

test('every record kind round-trips, including byte arrays inside control messages', async () => {
  const p = await pair();
  try {
    const a = new ProcessChannel(p.client, recorder(() => {}).handlers);
    const { got, handlers } = recorder(() => {});
    new ProcessChannel(p.server, handlers);
    const stdout = new Uint8Array([0, 1, 2, 250, 255]);
    a.sendControl({ type: 'reply', id: 7, ok: true, exec: { exitCode: 0, stdout, stderr: new Uint8Array(0) } });
    a.sendConsole(new TextEncoder().encode('hello\r\n'));
    const frame = new Uint8Array(1514).map((_, i) => i & 0xff);
    a.sendNic(3, frame);
    a.sendCounters(new Float64Array([1, 2.5, Number.NaN]));
    await until(() => got.counters.length === 1);
    const exec = (got.control[0] as { exec: { stdout: Uint8Array; stderr: Uint8Array } }).exec;
    assert.deepEqual(exec.stdout, stdout);
    assert.deepEqual(exec.stderr, new Uint8Array(0));
    assert.equal(new TextDecoder().decode(got.console[0]), 'hello\r\n');
    assert.equal(got.nic[0]![0], 3);
    assert.deepEqual(got.nic[0]![1], frame);
    assert.equal(got.nic[0]![1].buffer.byteLength, 1514, 'the frame owns its buffer (it may be transferred)');
    assert.equal(got.nic[0]![2], undefined, 'a plain frame has no offload metadata');
    assert.deepEqual([...got.counters[0]!].slice(0, 2), [1, 2.5]);
    assert.ok(Number.isNaN(got.counters[0]![2]));
  } finally {
    p.done();
  }
});

test('records split across reads byte by byte are reassembled', async () => {
  const p = await pair();
  try {
    const { got, handlers } = recorder(() => {});
    new ProcessChannel(p.server, handlers);
    const body = Buffer.from(JSON.stringify({ type: 'hello', id: 1, name: 'vm' }));
    const rec = Buffer.concat([Buffer.from([0, 0, 0, body.length + 1, 1]), body, Buffer.from([0, 0, 0, 3, 2, 0x61, 0x62])]);
    for (const b of rec) {
      p.client.write(Buffer.from([b]));
      await new Promise((r) => setImmediate(r));
    }
    await until(() => got.console.length === 1);
    assert.deepEqual(got.control, [{ type: 'hello', id: 1, name: 'vm' }]);
    assert.equal(Buffer.from(got.console[0]!).toString(), 'ab');
  } finally {
    p.done();
  }
});

test('NIC frames keep their offload metadata, up to a 64 KiB GSO super-segment; plain frames stay plain', async () => {
  const p = await pair();
  try {
    const a = new ProcessChannel(p.client, recorder(() => {}).handlers);
    const { got, handlers } = recorder(() => {});
    new ProcessChannel(p.server, handlers);
    const csum: FrameOffload = { flags: 1, gsoType: 0, gsoSize: 0, csumStart: 34, csumOffset: 16 };
    const gso: FrameOffload = { flags: 1, gsoType: 1, gsoSize: 1448, csumStart: 34, csumOffset: 16 };
    const small = new Uint8Array(200).map((_, i) => (i * 7) & 0xff);
    const big = new Uint8Array(MAX_GSO_FRAME_BYTES).map((_, i) => (i * 13) & 0xff);
    a.sendNic(0, small, csum);
    a.sendNic(1, big, gso);
    a.sendNic(2, small);
    a.sendNic(0, new Uint8Array(MAX_GSO_FRAME_BYTES + 1), gso);
    await until(() => got.nic.length === 3);
    assert.deepEqual(got.nic[0], [0, small, csum]);
    assert.deepEqual(got.nic[1], [1, big, gso]);
    assert.equal(got.nic[1]![1].buffer.byteLength, big.length, 'the frame owns its buffer');
    assert.deepEqual(got.nic[2], [2, small, undefined]);
    assert.equal(a.counters.droppedFrames, 1, 'a frame past the largest GSO frame is dropped at the sender');
    assert.equal(got.closed, undefined);
  } finally {
    p.done();
  }
});

/** A NIC offload record: index 0, the five u16 fields, then a 60-byte frame. */
function offloadRecord(flags: number, gsoType: number, gsoSize: number): number[] {
  const body = [0, ...[flags, gsoType, gsoSize, 34, 16].flatMap((v) => [v >> 8, v & 0xff]), ...new Array<number>(60).fill(0)];
  return [0, 0, 0, body.length + 1, 5, ...body];
}

for (const [what, bytes, code] of [
  ['an unknown record kind', [0, 0, 0, 2, 9, 0], 'UnknownKind'],
  ['a length past the kind limit (no buffering of it)', [0xff, 0xff, 0xff, 0xff, 2], 'RecordTooLarge'],
  ['an empty record', [0, 0, 0, 0, 1], 'EmptyRecord'],
  ['control bytes that are no JSON', [0, 0, 0, 3, 1, 0x7b, 0x7b], 'BadJson'],
  ['a control record that is no object with a type', [0, 0, 0, 3, 1, 0x5b, 0x5d], 'BadJson'],
  ['a NIC record without its index', [0, 0, 0, 1, 3], 'BadNicRecord'],
  ['counters that are no float64 array', [0, 0, 0, 4, 4, 1, 2, 3], 'BadCounters'],
  ['a NIC offload record shorter than its header', [0, 0, 0, 6, 5, 0, 0, 1, 0, 0], 'BadNicRecord'],
  ['offload flags we do not know', offloadRecord(0x8001, 0, 0), 'BadNicOffload'],
  ['a GSO type we do not offer (TCPv6)', offloadRecord(1, 4, 1448), 'BadNicOffload'],
  ['a GSO size the segmenter refuses', offloadRecord(1, 1, 1), 'BadNicOffload'],
] as const) {
  test(`hostile input: ${what} closes the channel with ${code}`, async () => {
    const p = await pair();
    try {
      const { got, handlers } = recorder(() => {});
      new ProcessChannel(p.server, handlers);
      p.client.write(Buffer.from(bytes));
      await until(() => got.closed !== undefined);
      assert.ok(got.closed instanceof ChannelError, String(got.closed));
      assert.equal(got.closed.code, code);
      assert.equal(got.control.length + got.console.length + got.nic.length, 0);
    } finally {
      p.done();
    }
  });
}
