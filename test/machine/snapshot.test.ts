/**
 * Machine state save/load (src/machine/snapshot): the container format refuses corrupt, truncated and foreign
 * files naming the section, and a running bare-metal machine (counter in registers and RAM, FP sum, CLINT timer
 * interrupts, UART output) saved and loaded into a fresh Machine continues exactly as the original does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Machine, type MachineOptions } from '../../src/machine/machine.js';
import { createHart } from '../../src/machine/hart-adapter.js';
import { bufferSource, encodeStateBytes, StateFile } from '../../src/machine/snapshot/format.js';
import { SnapshotError } from '../../src/machine/snapshot/errors.js';
import { decodeValue, encodeValue } from '../../src/machine/snapshot/values.js';
import { captureMachineState, restoreMachineState } from '../../src/machine/snapshot/machine-state.js';
import { crc32c } from '../../src/machine/snapshot/crc32c.js';
import { buildElf } from '../riscv/harness.js';
import { repoRoot } from '../helpers/paths.js';

const counterElf = buildElf(readFileSync(join(repoRoot, 'test/machine/programs/snapshot-counter.S'), 'utf8'));

function counterMachine(out: { text: string }, overrides: Partial<MachineOptions> = {}): Machine {
  return new Machine({
    harts: 1,
    memoryBytes: 16 << 20,
    firmware: { kind: 'none' },
    kernel: counterElf,
    deterministicTime: true,
    createHart,
    onConsoleOutput: (b) => (out.text += new TextDecoder().decode(b)),
    ...overrides,
  });
}

async function waitLines(out: { text: string }, n: number, from = 0): Promise<void> {
  const t0 = Date.now();
  while (out.text.slice(from).split('\n').length - 1 < n) {
    if (Date.now() - t0 > 60_000) throw new Error(`timed out waiting for ${n} lines: ${out.text.slice(from)}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const lines = (text: string): string[] => text.split('\n').filter((l) => l.length > 0);

function expectSnapshotError(fn: () => unknown, code: string, section: RegExp | string): SnapshotError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SnapshotError, `expected a SnapshotError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (typeof section === 'string') assert.equal(err.section, section, err.message);
    else assert.match(err.section, section, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

test('crc32c matches the Castagnoli check value', () => {
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  const big = new Uint8Array(1000).map((_, i) => (i * 7) & 0xff);
  assert.equal(crc32c(big.subarray(500), crc32c(big.subarray(0, 500))), crc32c(big));
});

test('state values round-trip, and hostile encodings are refused with the section name', () => {
  const v = { a: 1.5, b: [1, 2, { c: 'x' }], d: new Uint8Array([1, 2, 3]), e: new Int32Array([-1, 7]), f: null, g: true };
  assert.deepEqual(decodeValue(encodeValue(v), 's'), v);
  const enc = encodeValue({ long: 'abcdef' });
  expectSnapshotError(() => decodeValue(enc.subarray(0, enc.length - 2), 'dev'), 'BAD_VALUE', 'dev');
  expectSnapshotError(() => decodeValue(new Uint8Array([42]), 'dev'), 'BAD_VALUE', 'dev');
  // An array claiming 2^32-1 elements with no bytes behind it is refused without allocating.
  expectSnapshotError(() => decodeValue(new Uint8Array([7, 0xff, 0xff, 0xff, 0xff]), 'dev'), 'BAD_VALUE', 'dev');
});

test(
  'a saved machine loads into a fresh one and continues exactly (registers, FP, RAM, timer, UART)',
  { timeout: 120_000 },
  async () => {
    const a = { text: '' };
    const ma = counterMachine(a);
    ma.start();
    await waitLines(a, 3);
    ma.pause();
    const bytes = encodeStateBytes(captureMachineState(ma));
    const savedAt = a.text.length;
    const before = lines(a.text);
    ma.resume();
    await waitLines(a, 6, savedAt);
    ma.stop();
    const expected = lines(a.text.slice(savedAt)).slice(0, 6);

    for (const lazyRam of [false, true]) {
      const b = { text: '' };
      const mb = counterMachine(b);
      const report = restoreMachineState(mb, new StateFile(bufferSource(bytes)), { lazyRam });
      assert.ok(report.ramChunks >= 1);
      if (lazyRam) assert.equal(mb.ram.lazyChunksLeft, report.ramChunks);
      mb.start();
      await waitLines(b, 6);
      mb.stop();
      const got = lines(b.text).slice(0, 6);
      assert.deepEqual(got, expected, `lazyRam=${lazyRam}`);
      // The counter continued from the saved value, and timer interrupts kept arriving.
      const [count, ticks] = got[0]!.split(' ').map((h) => parseInt(h, 16));
      const [lastCount, lastTicks] = before[before.length - 1]!.split(' ').map((h) => parseInt(h, 16));
      assert.equal(count, lastCount! + 20000);
      assert.ok(ticks! >= lastTicks! && ticks! > 0);
    }
  },
);

test('corrupt, truncated and foreign state files are refused, naming the section', async () => {
  const a = { text: '' };
  const ma = counterMachine(a);
  ma.start();
  await waitLines(a, 1);
  ma.pause();
  const good = encodeStateBytes(captureMachineState(ma, { extra: { note: 'hello' } }));
  ma.stop();
  const file = new StateFile(bufferSource(good));
  const restoreInto = (bytes: Uint8Array, overrides: Partial<MachineOptions> = {}) =>
    restoreMachineState(counterMachine({ text: '' }, overrides), new StateFile(bufferSource(bytes)));

  assert.deepEqual(restoreMachineState(counterMachine({ text: '' }), file).extra, { note: 'hello' });

  // Flip one byte inside each value section's payload: the restore names that section.
  for (const name of file.names().filter((n) => n !== 'ram')) {
    const at = findSection(good, name);
    const bad = good.slice();
    bad[at + 3]! ^= 0x40;
    expectSnapshotError(() => restoreInto(bad), 'CHECKSUM_MISMATCH', name);
  }
  // A flipped byte in RAM data is found when the chunk is read (eagerly here).
  const ramBad = good.slice();
  ramBad[good.length - 4096 - 64]! ^= 1;
  expectSnapshotError(() => restoreInto(ramBad), 'CHECKSUM_MISMATCH', 'ram');
  // Truncation anywhere.
  for (const cut of [10, 100, good.length >> 1, good.length - 1])
    expectSnapshotError(() => restoreInto(good.subarray(0, cut)), 'TRUNCATED', /.*/);
  // Not a state file; a future version.
  expectSnapshotError(() => restoreInto(new Uint8Array(64)), 'BAD_MAGIC', 'file');
  const future = good.slice();
  future[8] = 99;
  expectSnapshotError(() => restoreInto(future), 'UNSUPPORTED_VERSION', 'file');
  // Another board shape.
  expectSnapshotError(() => restoreInto(good, { memoryBytes: 32 << 20 }), 'INCOMPATIBLE', 'header');
});

/** Offset of a section's payload in a state file (tests only: walks the headers). */
function findSection(bytes: Uint8Array, name: string): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 24;
  for (;;) {
    const nameLen = dv.getUint32(pos + 8, true);
    const len = dv.getUint32(pos + 12, true);
    const n = new TextDecoder().decode(bytes.subarray(pos + 28, pos + 28 + nameLen));
    const hl = 28 + nameLen;
    const payload = pos + hl + ((8 - (hl % 8)) % 8);
    if (n === name) return payload;
    pos = payload + len + ((8 - (len % 8)) % 8);
  }
}
