import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceTree, parseFdt, prop, FdtParseError } from '../../src/machine/fdt.js';
import { buildDeviceTree } from '../../src/machine/devicetree.js';

function dtc(blob: Uint8Array): { status: number | null; stdout: string; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tv-fdt-'));
  const file = join(dir, 'x.dtb');
  writeFileSync(file, blob);
  const r = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', file], { encoding: 'utf8' });
  if (r.error) throw new Error(`dtc is required but not runnable (${r.error.message}): apt-get install device-tree-compiler`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('FDT writer: header, strings and round trip through our parser', () => {
  const dt = new DeviceTree();
  dt.root.set('#address-cells', prop.u32(2)).set('model', prop.str('m'));
  const a = dt.root.child('a@1');
  const ph = dt.phandle(a);
  a.set('reg', prop.u64(0x1_0000_0000, 0x1000)).set('compatible', prop.strs('x,y', 'z'));
  dt.root.child('b').set('link', prop.u32(ph)).set('flag', prop.empty());
  dt.reservations.push({ address: 0x8000_0000, size: 0x20_0000 });
  const blob = dt.toBlob(256);
  const dv = new DataView(blob.buffer);
  assert.equal(dv.getUint32(0), 0xd00dfeed);
  assert.equal(dv.getUint32(4), blob.length);
  assert.equal(dv.getUint32(20), 17); // version
  assert.equal(dv.getUint32(24), 16); // last compatible version
  const root = parseFdt(blob);
  const node = root.find('a@1')!;
  assert.deepEqual([...node.props.find((p) => p[0] === 'reg')![1]], [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]);
  assert.equal(new TextDecoder().decode(node.props.find((p) => p[0] === 'compatible')![1]), 'x,y\0z\0');
  assert.equal(ph, 1);
  const r = dtc(blob);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\/memreserve\/\s+0x0*80000000 0x0*200000;/);
  assert.match(r.stdout, /link = <0x01>;/);
});

test('parseFdt rejects garbage with a named error', () => {
  assert.throws(() => parseFdt(new Uint8Array(10)), FdtParseError);
  assert.throws(() => parseFdt(new Uint8Array(64)), /bad magic/);
});

for (const harts of [1, 4]) {
  test(`virt device tree (${harts} harts) decompiles with dtc without warnings`, () => {
    const dt = buildDeviceTree({
      harts,
      ramBase: 0x8000_0000,
      ramSize: 256 << 20,
      isa: 'rv64imafdc_zicsr_zifencei_zicntr_sstc',
      mmuType: 'riscv,sv48',
      bootargs: 'console=ttyS0',
      initrd: { start: 0x8f00_0000, end: 0x8f10_0000 },
      reserved: { base: 0x8000_0000, size: 0x20_0000, name: 'mmode_resv0' },
      rngSeed: new Uint8Array(32).fill(7),
    });
    const r = dtc(dt.toBlob());
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', `dtc warnings:\n${r.stderr}`);
    for (const needle of [
      'compatible = "sifive,plic-1.0.0\\0riscv,plic0";',
      'compatible = "sifive,clint0\\0riscv,clint0";',
      'compatible = "ns16550a";',
      'compatible = "google,goldfish-rtc";',
      'compatible = "sifive,test1\\0sifive,test0\\0syscon";',
      'compatible = "syscon-poweroff";',
      'compatible = "syscon-reboot";',
      'timebase-frequency = <0x989680>;',
      'riscv,isa = "rv64imafdc_zicsr_zifencei_zicntr_sstc";',
      'stdout-path = "/soc/serial@10000000";',
      'bootargs = "console=ttyS0";',
      'linux,initrd-start = <0x00 0x8f000000>;',
      'virtio_mmio@10001000',
      'virtio_mmio@10008000',
    ]) {
      assert.ok(r.stdout.includes(needle), `missing ${needle}`);
    }
    assert.equal(r.stdout.match(/riscv,cpu-intc/g)?.length, harts);
    // The PLIC routes every hart's M (11) and S (9) external interrupts.
    const plic = /plic@c000000 \{[^}]*interrupts-extended = <([^>]*)>/.exec(r.stdout)![1]!.trim().split(/\s+/);
    assert.equal(plic.length, harts * 4);
  });
}
