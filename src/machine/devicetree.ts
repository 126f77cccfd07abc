/** Builds the device tree that describes our virt-compatible board, node for node like QEMU virt's. */
import { DeviceTree, prop } from './fdt.js';
import * as L from './layout.js';

export interface DeviceTreeOptions {
  harts: number;
  ramBase: number;
  ramSize: number;
  /** e.g. "rv64imafdc_zicsr_zifencei_zicntr_sstc" — must match what the hart implements. */
  isa: string;
  mmuType: 'riscv,sv39' | 'riscv,sv48';
  bootargs?: string;
  initrd?: { start: number; end: number };
  /** Firmware region to keep the kernel away from (external firmware at the bottom of RAM). */
  reserved?: { base: number; size: number; name: string };
  rngSeed?: Uint8Array;
}

export function buildDeviceTree(o: DeviceTreeOptions): DeviceTree {
  const dt = new DeviceTree();
  const root = dt.root;
  root.set('#address-cells', prop.u32(2)).set('#size-cells', prop.u32(2));
  root.set('compatible', prop.str('riscv-virtio')).set('model', prop.str('riscv-virtio,typevisor'));

  const chosen = root.child('chosen');
  chosen.set('stdout-path', prop.str(`/soc/serial@${hex(L.UART0_BASE)}`));
  if (o.bootargs !== undefined) chosen.set('bootargs', prop.str(o.bootargs));
  if (o.initrd) {
    chosen.set('linux,initrd-start', prop.u64(o.initrd.start));
    chosen.set('linux,initrd-end', prop.u64(o.initrd.end));
  }
  if (o.rngSeed) chosen.set('rng-seed', prop.bytes(o.rngSeed));

  const memory = root.child(`memory@${hex(o.ramBase)}`);
  memory.set('device_type', prop.str('memory')).set('reg', prop.u64(o.ramBase, o.ramSize));

  if (o.reserved) {
    const rm = root.child('reserved-memory');
    rm.set('#address-cells', prop.u32(2)).set('#size-cells', prop.u32(2)).set('ranges', prop.empty());
    rm.child(`${o.reserved.name}@${hex(o.reserved.base)}`)
      .set('reg', prop.u64(o.reserved.base, o.reserved.size))
      .set('no-map', prop.empty());
  }

  const cpus = root.child('cpus');
  cpus.set('#address-cells', prop.u32(1)).set('#size-cells', prop.u32(0));
  cpus.set('timebase-frequency', prop.u32(L.TIMEBASE_HZ));
  const intc: number[] = [];
  const cpuPhandles: number[] = [];
  for (let h = 0; h < o.harts; h++) {
    const cpu = cpus.child(`cpu@${h}`);
    cpuPhandles.push(dt.phandle(cpu));
    cpu.set('device_type', prop.str('cpu')).set('reg', prop.u32(h)).set('status', prop.str('okay'));
    cpu.set('compatible', prop.str('riscv')).set('riscv,isa', prop.str(o.isa)).set('mmu-type', prop.str(o.mmuType));
    const ic = cpu.child('interrupt-controller');
    ic.set('#address-cells', prop.u32(0)).set('#interrupt-cells', prop.u32(1));
    ic.set('interrupt-controller', prop.empty()).set('compatible', prop.str('riscv,cpu-intc'));
    intc.push(dt.phandle(ic));
  }
  const cluster = cpus.child('cpu-map').child('cluster0');
  cpuPhandles.forEach((ph, h) => cluster.child(`core${h}`).set('cpu', prop.u32(ph)));

  const soc = root.child('soc');
  soc.set('#address-cells', prop.u32(2)).set('#size-cells', prop.u32(2));
  soc.set('compatible', prop.str('simple-bus')).set('ranges', prop.empty());

  const clint = soc.child(`clint@${hex(L.CLINT_BASE)}`);
  clint.set('interrupts-extended', prop.u32(...intc.flatMap((ph) => [ph, 3, ph, 7]))); // MSIP, MTIP
  clint.set('reg', prop.u64(L.CLINT_BASE, L.CLINT_SIZE)).set('compatible', prop.strs('sifive,clint0', 'riscv,clint0'));

  const plic = soc.child(`plic@${hex(L.PLIC_BASE)}`);
  const plicPh = dt.phandle(plic);
  plic.set('riscv,ndev', prop.u32(L.PLIC_NUM_SOURCES - 1)).set('reg', prop.u64(L.PLIC_BASE, L.PLIC_SIZE));
  plic.set('interrupts-extended', prop.u32(...intc.flatMap((ph) => [ph, 11, ph, 9]))); // MEIP, SEIP per hart
  plic.set('interrupt-controller', prop.empty()).set('compatible', prop.strs('sifive,plic-1.0.0', 'riscv,plic0'));
  plic.set('#address-cells', prop.u32(0)).set('#interrupt-cells', prop.u32(1));

  const test = soc.child(`test@${hex(L.TEST_BASE)}`);
  const testPh = dt.phandle(test);
  test.set('reg', prop.u64(L.TEST_BASE, L.TEST_SIZE)).set('compatible', prop.strs('sifive,test1', 'sifive,test0', 'syscon'));
  root
    .child('poweroff')
    .set('value', prop.u32(0x5555))
    .set('offset', prop.u32(0))
    .set('regmap', prop.u32(testPh))
    .set('compatible', prop.str('syscon-poweroff'));
  root
    .child('reboot')
    .set('value', prop.u32(0x7777))
    .set('offset', prop.u32(0))
    .set('regmap', prop.u32(testPh))
    .set('compatible', prop.str('syscon-reboot'));

  const uart = soc.child(`serial@${hex(L.UART0_BASE)}`);
  uart.set('interrupts', prop.u32(L.UART0_IRQ)).set('interrupt-parent', prop.u32(plicPh));
  uart
    .set('clock-frequency', prop.u32(L.UART_CLOCK_HZ))
    .set('reg', prop.u64(L.UART0_BASE, L.UART0_SIZE))
    .set('compatible', prop.str('ns16550a'));

  const rtc = soc.child(`rtc@${hex(L.RTC_BASE)}`);
  rtc.set('interrupts', prop.u32(L.RTC_IRQ)).set('interrupt-parent', prop.u32(plicPh));
  rtc.set('reg', prop.u64(L.RTC_BASE, L.RTC_SIZE)).set('compatible', prop.str('google,goldfish-rtc'));

  // Like QEMU, describe every slot (highest address first, so Linux probes slot 0 first — it walks nodes in
  // reverse); empty slots answer with device id 0 and the driver skips them.
  for (let i = L.VIRTIO_COUNT - 1; i >= 0; i--) {
    const base = L.VIRTIO_BASE + i * L.VIRTIO_STRIDE;
    const v = soc.child(`virtio_mmio@${hex(base)}`);
    v.set('interrupts', prop.u32(L.VIRTIO_IRQ_FIRST + i)).set('interrupt-parent', prop.u32(plicPh));
    v.set('reg', prop.u64(base, L.VIRTIO_STRIDE)).set('compatible', prop.str('virtio,mmio'));
  }
  return dt;
}

function hex(n: number): string {
  return n.toString(16);
}
