import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Clint, MIP_MSIP, MIP_MTIP } from '../../src/devices/clint.js';
import { Plic } from '../../src/devices/plic.js';
import { Ns16550a } from '../../src/devices/uart.js';
import { SifiveTest, type SysconEvent } from '../../src/devices/syscon.js';
import { GoldfishRtc } from '../../src/devices/rtc.js';

function fakeClintHost() {
  const irqs = new Map<string, boolean>();
  let time = 1000;
  return {
    irqs,
    setTime: (t: number) => (time = t),
    host: {
      setHartIrq: (h: number, bit: number, l: boolean) => irqs.set(`${h}:${bit}`, l),
      readTime: () => time,
      setTime: (t: number) => (time = t),
    },
  };
}

test('CLINT: msip per hart raises MSIP', () => {
  const f = fakeClintHost();
  const c = new Clint(2, f.host);
  c.write(4, 4, 1);
  assert.equal(f.irqs.get(`1:${MIP_MSIP}`), true);
  assert.equal(c.read(4, 4), 1);
  assert.equal(c.read(0, 4), 0);
  c.write(4, 4, 0);
  assert.equal(f.irqs.get(`1:${MIP_MSIP}`), false);
});

test('CLINT: mtimecmp halves, MTIP at and after the deadline, mtime reads', () => {
  const f = fakeClintHost();
  const c = new Clint(2, f.host);
  assert.equal(c.read(0x4008, 4), 0xffff_ffff); // reset value: never
  c.write(0x4008, 4, 2000); // hart 1 low half
  c.write(0x400c, 4, 0); // high half
  assert.equal(c.mtimecmp(1), 2000);
  assert.notEqual(f.irqs.get(`1:${MIP_MTIP}`), true);
  assert.equal(c.nextDeadline(), 2000);
  f.setTime(2000);
  c.updateTimers(2000);
  assert.equal(f.irqs.get(`1:${MIP_MTIP}`), true);
  assert.equal(c.nextDeadline(), Infinity);
  // Rewriting the compare value into the future lowers MTIP again.
  c.write(0x400c, 4, 1);
  assert.equal(f.irqs.get(`1:${MIP_MTIP}`), false);
  f.setTime(0x1_2345_6789);
  assert.equal(c.read(0xbff8, 4), 0x2345_6789);
  assert.equal(c.read(0xbffc, 4), 1);
  c.write(0xbff8, 4, 5);
  assert.equal(c.read(0xbff8, 4), 5);
});

test('PLIC: claim/complete with priorities, threshold and per-context enables', () => {
  const out = new Map<number, boolean>();
  const p = new Plic(96, 2, (ctx, l) => out.set(ctx, l));
  const S0 = 1; // hart0 S context
  p.write(10 * 4, 4, 1); // priority(10) = 1
  p.write(11 * 4, 4, 3); // priority(11) = 3
  p.write(0x2000 + 0x80 * S0, 4, (1 << 10) | (1 << 11)); // enable both for ctx 1
  p.line(10).set(true);
  assert.equal(out.get(S0), true);
  assert.equal(out.get(0), undefined); // M context did not enable it
  assert.equal(p.read(0x1000, 4), 1 << 10); // pending
  p.line(11).set(true);
  const claim = 0x20_0000 + 0x1000 * S0 + 4;
  assert.equal(p.read(claim, 4), 11); // higher priority first
  assert.equal(p.read(claim, 4), 10);
  assert.equal(p.read(claim, 4), 0); // nothing left
  assert.equal(out.get(S0), false);
  // Completing a still-raised level source makes it pending again.
  p.write(claim, 4, 11);
  assert.equal(out.get(S0), true);
  p.line(11).set(false);
  assert.equal(out.get(S0), false);
  // Threshold masks priorities at or below it.
  p.write(claim, 4, 10);
  assert.equal(out.get(S0), true);
  p.write(0x20_0000 + 0x1000 * S0, 4, 1);
  assert.equal(out.get(S0), false);
  assert.equal(p.read(claim, 4), 0);
  p.write(0x20_0000 + 0x1000 * S0, 4, 0);
  assert.equal(p.read(claim, 4), 10);
  // Source 0 does not exist: its enable bit is hardwired to zero.
  p.write(0x2000, 4, 0xffff_ffff);
  assert.equal(p.read(0x2000, 4), 0xffff_fffe);
  // Claims of 11, 10 and 10 found a source, two found none; 11 and 10 were completed.
  assert.deepEqual(p.metrics(), { claims: 3, emptyClaims: 2, completions: 2 });
});

test('PLIC: state round-trips', () => {
  const p = new Plic(96, 1, () => {});
  p.write(4 * 5, 4, 2);
  p.line(5).set(true);
  const q = new Plic(96, 1, () => {});
  q.loadState(p.saveState());
  assert.deepEqual(q.saveState(), p.saveState());
  assert.throws(() => q.loadState({ type: 'plic', version: 99, data: p.saveState().data }), /unsupported state version/);
});

function uart() {
  const out: number[] = [];
  const irq = {
    level: false,
    set(l: boolean) {
      this.level = l;
    },
  };
  const u = new Ns16550a(irq, (b) => out.push(b));
  return { u, out, irq };
}

test('UART: transmit, LSR bits and the THRE interrupt', () => {
  const { u, out, irq } = uart();
  assert.equal(u.read(5, 1) & 0x60, 0x60); // THRE | TEMT
  u.write(0, 1, 0x41);
  assert.deepEqual(out, [0x41]);
  assert.equal(irq.level, false); // IER = 0
  u.write(1, 1, 0x02); // ETBEI
  assert.equal(irq.level, true);
  assert.equal(u.read(2, 1) & 0x0f, 0x02); // IIR: THRE; reading it clears the condition
  assert.equal(irq.level, false);
  assert.equal(u.read(2, 1) & 0x0f, 0x01); // no interrupt
  u.write(0, 1, 0x42);
  assert.equal(irq.level, true);
});

test('UART: RX FIFO holds 16 bytes, the rest waits in the host queue; RX interrupt and DR', () => {
  const { u, irq } = uart();
  u.write(2, 1, 0x01); // FIFO enable, trigger 1
  u.write(1, 1, 0x01); // ERBFI
  const input = Array.from({ length: 20 }, (_, i) => 0x30 + i);
  u.receive(input);
  assert.equal(irq.level, true);
  assert.equal(u.read(2, 1), 0xc4); // FIFO enabled + RDA
  const got: number[] = [];
  while (u.read(5, 1) & 0x01) got.push(u.read(0, 1));
  assert.deepEqual(got, input);
  assert.equal(irq.level, false);
  assert.equal(u.read(5, 1) & 0x01, 0);
});

test('UART: divisor latch, scratch and loopback', () => {
  const { u, out } = uart();
  u.write(3, 1, 0x80); // DLAB
  u.write(0, 1, 0x12);
  u.write(1, 1, 0x34);
  assert.equal(u.read(0, 1), 0x12);
  assert.equal(u.read(1, 1), 0x34);
  u.write(3, 1, 0x03);
  assert.equal(u.read(1, 1), 0); // IER again
  u.write(7, 1, 0x5a);
  assert.equal(u.read(7, 1), 0x5a);
  u.write(4, 1, 0x10); // loopback
  u.write(0, 1, 0x77);
  assert.deepEqual(out, []);
  assert.equal(u.read(0, 1), 0x77);
  const copy = uart();
  copy.u.loadState(u.saveState());
  assert.deepEqual(copy.u.saveState(), u.saveState());
});

test('syscon: poweroff, reboot and fail codes', () => {
  const events: SysconEvent[] = [];
  const t = new SifiveTest((e) => events.push(e));
  t.write(0, 4, 0x5555);
  t.write(0, 4, 0x7777);
  t.write(0, 4, (3 << 16) | 0x3333);
  t.write(0, 4, 0x1234);
  t.write(0, 2, 0x5555); // OpenSBI's sifive_test driver uses a 16-bit store
  assert.deepEqual(events, [{ kind: 'poweroff' }, { kind: 'reboot' }, { kind: 'fail', code: 3 }, { kind: 'poweroff' }]);
});

test('goldfish RTC shows host time in ns and fires its alarm', () => {
  let ms = 1_700_000_000_123;
  const irq = {
    level: false,
    set(l: boolean) {
      this.level = l;
    },
  };
  const rtc = new GoldfishRtc(irq, () => ms);
  const lo = rtc.read(0x00, 4);
  const hi = rtc.read(0x04, 4);
  assert.equal(BigInt(hi) * 2n ** 32n + BigInt(lo), 1_700_000_000_123_000_000n);
  rtc.write(0x10, 4, 1); // IRQ_ENABLED
  const alarm = 1_700_000_001_000_000_000n;
  rtc.write(0x0c, 4, Number(alarm >> 32n));
  rtc.write(0x08, 4, Number(alarm & 0xffff_ffffn));
  assert.equal(rtc.read(0x18, 4), 1);
  rtc.poll();
  assert.equal(irq.level, false);
  ms += 1000;
  rtc.poll();
  assert.equal(irq.level, true);
  rtc.write(0x1c, 4, 1);
  assert.equal(irq.level, false);
});
