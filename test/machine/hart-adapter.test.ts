import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestRam } from '../../src/machine/memory.js';
import { createHart, HartAdapter } from '../../src/machine/hart-adapter.js';
import * as C from '../../src/riscv/csr.js';

function setup() {
  const ram = new GuestRam(1 << 20);
  const bus = ram.asBus({ mmioRead: () => undefined, mmioWrite: () => false });
  const port = createHart(bus, { hartId: 0, readTime: () => 0 }) as HartAdapter;
  return { ram, port };
}

test('enterSupervisor puts the hart where OpenSBI would leave it', () => {
  const { port } = setup();
  port.enterSupervisor(0x8000_2000);
  const h = port.hart;
  assert.equal(h.priv, C.PRV_S);
  assert.equal(port.pc, 0x8000_2000);
  assert.equal(h.mideleg, 0x222);
  assert.equal(h.medeleg & (1 << 9), 0, 'ecall from S stays in M (it is the SBI call)');
  assert.ok(h.medeleg & (1 << 12) && h.medeleg & (1 << 2) && h.medeleg & (1 << 8));
  assert.ok(h.sstcEnabled);
  assert.equal((h.mstatus & C.MSTATUS_FS) >>> C.MSTATUS_FS_SHIFT, C.FS_INITIAL);
  assert.equal(h.mstatus & C.MSTATUS_SIE, 0);
});

test('stimecmp and SSIP through the adapter; the trap ring records recent traps', () => {
  const { ram, port } = setup();
  port.enterSupervisor(0x8000_0000);
  port.stimecmp = 12345;
  assert.equal(port.stimecmp, 12345);
  port.stimecmp = Infinity;
  assert.ok(port.stimecmp >= 2 ** 63);
  port.setPending(1, true); // SSIP lives in the software half, so the guest can clear it through sip
  assert.equal(port.hart.mipSw & 2, 2);
  port.setPending(1, false);
  assert.equal(port.hart.mipSw & 2, 0);
  // ebreak at the reset vector with mtvec pointing at it: a breakpoint storm that run() must still return from.
  ram.writeU32(0x8000_0000, 0x0010_0073);
  port.reset(0x8000_0000);
  port.hart.writeCsr(C.CSR_MTVEC, 0x8000_0000 | 0, 0);
  port.run(50);
  const traps = port.recentTraps();
  assert.equal(traps.length, 16);
  assert.match(traps.at(-1)!, /^exception 3 epc=0x80000000 /);
});
