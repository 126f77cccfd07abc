import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestRam } from '../../src/machine/memory.js';
import {
  BuiltinSbi,
  EXT_BASE,
  EXT_DBCN,
  EXT_HSM,
  EXT_IPI,
  EXT_RFENCE,
  EXT_SRST,
  EXT_TIME,
  HSM_STARTED,
  HSM_STOPPED,
  SBI_ERR_ALREADY_AVAILABLE,
  SBI_ERR_NOT_SUPPORTED,
  SBI_SPEC_VERSION,
  type ResetKind,
} from '../../src/machine/sbi.js';
import { FakeHart } from './fake-hart.js';

function setup(n = 2) {
  const harts = Array.from({ length: n }, (_, i) => new FakeHart(i));
  const ram = new GuestRam(1 << 20);
  const out: number[] = [];
  const input = [0x61, 0x62];
  const resets: ResetKind[] = [];
  const running = new Map<number, boolean>();
  const sbi = new BuiltinSbi({
    harts,
    ram,
    consoleWrite: (b) => out.push(...b),
    consoleRead: () => input.shift() ?? -1,
    systemReset: (k) => resets.push(k),
    setHartRunning: (h, r) => running.set(h, r),
  });
  sbi.install();
  return { harts, ram, out, resets, running, sbi, input };
}

test('SBI base: spec version, probe, machine ids', () => {
  const { harts } = setup();
  const h = harts[0]!;
  assert.deepEqual(h.ecall(EXT_BASE, 0), [0, SBI_SPEC_VERSION]);
  for (const ext of [EXT_TIME, EXT_IPI, EXT_RFENCE, EXT_HSM, EXT_SRST, EXT_DBCN, 0x01])
    assert.deepEqual(h.ecall(EXT_BASE, 3, ext), [0, 1], `probe ${ext}`);
  assert.deepEqual(h.ecall(EXT_BASE, 3, 0x504d55), [0, 0]); // PMU: absent
  assert.deepEqual(h.ecall(EXT_BASE, 4), [0, 0]);
  assert.equal(h.ecall(0x12345678, 0)[0], SBI_ERR_NOT_SUPPORTED);
});

test('SBI TIME programs stimecmp and clears STIP; legacy set_timer too', () => {
  const { harts } = setup();
  const h = harts[0]!;
  h.pending.add(5);
  assert.deepEqual(h.ecall(EXT_TIME, 0, 123456), [0, 0]);
  assert.equal(h.stimecmp, 123456);
  assert.equal(h.pending.has(5), false);
  h.ecall(0x00, 0, 777);
  assert.equal(h.stimecmp, 777);
  h.ecall(EXT_TIME, 0, -1); // all ones: never
  assert.equal(h.stimecmp, Infinity);
});

test('SBI IPI sets SSIP on the selected harts; RFENCE flushes them', () => {
  const { harts } = setup(4);
  const h = harts[0]!;
  assert.deepEqual(h.ecall(EXT_IPI, 0, 0b0101, 0), [0, 0]);
  assert.deepEqual(
    harts.map((x) => x.pending.has(1)),
    [true, false, true, false],
  );
  h.ecall(EXT_IPI, 0, 0b1, 3); // mask relative to base 3
  assert.equal(harts[3]!.pending.has(1), true);
  h.ecall(EXT_RFENCE, 1, 0, -1, 0, -1); // base -1: all harts; size -1: the whole address space
  assert.deepEqual(
    harts.map((x) => x.rangeFlushes),
    [[[0, -1, -1]], [[0, -1, -1]], [[0, -1, -1]], [[0, -1, -1]]],
  );
  // sfence.vma_asid of one kernel page on hart 1: the start stays a signed virtual address
  h.ecall(EXT_RFENCE, 2, 0b10, 0, -0x7fff_f000, 4096, 7);
  assert.deepEqual(harts[1]!.rangeFlushes[1], [-0x7fff_f000, 4096, 7]);
  assert.equal(harts[0]!.rangeFlushes.length, 1);
  h.ecall(EXT_RFENCE, 0, 0b10, 0);
  assert.deepEqual(
    harts.map((x) => x.decodeFlushes),
    [0, 1, 0, 0],
  );
  h.ecall(EXT_RFENCE, 0, 0, -1); // all harts: the caller's own decode cache is already coherent
  assert.deepEqual(
    harts.map((x) => x.decodeFlushes),
    [0, 2, 1, 1],
  );
  assert.equal(h.ecall(EXT_IPI, 0, 1, 9)[0], -3); // hart 9 doesn't exist
});

test('SBI HSM: start, status, stop', () => {
  const { harts, running } = setup();
  const h0 = harts[0]!;
  assert.deepEqual(h0.ecall(EXT_HSM, 2, 1), [0, HSM_STOPPED]);
  assert.deepEqual(h0.ecall(EXT_HSM, 0, 1, 0x8000_1000, 0xabc), [0, 0]);
  const h1 = harts[1]!;
  assert.equal(h1.pc, 0x8000_1000);
  assert.equal(h1.mode, 'S');
  assert.deepEqual([h1.getX(10).lo, h1.getX(11).lo], [1, 0xabc]);
  assert.equal(running.get(1), true);
  assert.deepEqual(h0.ecall(EXT_HSM, 2, 1), [0, HSM_STARTED]);
  assert.equal(h0.ecall(EXT_HSM, 0, 1, 0x8000_1000, 0)[0], SBI_ERR_ALREADY_AVAILABLE);
  h1.ecall(EXT_HSM, 1);
  assert.equal(running.get(1), false);
  assert.equal(h1.exitRequests, 1);
  assert.deepEqual(h0.ecall(EXT_HSM, 2, 1), [0, HSM_STOPPED]);
});

test('SBI SRST and legacy shutdown request a reset', () => {
  const { harts, resets } = setup();
  harts[0]!.ecall(EXT_SRST, 0, 0, 0);
  harts[0]!.ecall(EXT_SRST, 0, 1, 0);
  harts[0]!.ecall(0x08, 0);
  assert.deepEqual(resets, ['shutdown', 'reboot', 'shutdown']);
  assert.equal(harts[0]!.ecall(EXT_SRST, 0, 7, 0)[0], -3);
});

test('SBI DBCN write/read/write_byte and legacy console', () => {
  const { harts, ram, out } = setup();
  const h = harts[0]!;
  ram.write(0x8000_0100, new TextEncoder().encode('hello'));
  assert.deepEqual(h.ecall(EXT_DBCN, 0, 5, 0x8000_0100, 0), [0, 5]);
  h.ecall(EXT_DBCN, 2, 0x21);
  h.ecall(0x01, 0, 0x0a);
  assert.equal(new TextDecoder().decode(Uint8Array.from(out)), 'hello!\n');
  assert.deepEqual(h.ecall(EXT_DBCN, 1, 8, 0x8000_0200, 0), [0, 2]);
  assert.equal(ram.readU8(0x8000_0200), 0x61);
  assert.equal(h.ecall(0x02, 0)[0], -1); // legacy getchar: nothing left
  assert.equal(h.ecall(EXT_DBCN, 0, 5, 0x100, 0)[0], -3); // outside RAM
});
