/**
 * The sifive,test device QEMU virt uses for poweroff and reboot (Linux reaches it through syscon-poweroff and
 * syscon-reboot nodes; OpenSBI through its sifive_test driver).
 */
import { checkState, type DeviceState, type MmioDevice, type Stateful } from './device.js';

export const FINISHER_FAIL = 0x3333; // exit with failure; code in the upper 16 bits
export const FINISHER_PASS = 0x5555; // power off
export const FINISHER_RESET = 0x7777; // reboot

export type SysconEvent = { kind: 'poweroff' } | { kind: 'reboot' } | { kind: 'fail'; code: number };

export class SifiveTest implements MmioDevice, Stateful<null> {
  readonly name = 'test';
  readonly size = 0x1000;
  constructor(private readonly onEvent: (e: SysconEvent) => void) {}

  read(): number {
    return 0;
  }
  write(offset: number, size: number, value: number): void {
    if (offset !== 0 || size < 2) return; // OpenSBI's sifive_test driver uses a 16-bit writew
    const status = value & 0xffff;
    if (status === FINISHER_PASS) this.onEvent({ kind: 'poweroff' });
    else if (status === FINISHER_RESET) this.onEvent({ kind: 'reboot' });
    else if (status === FINISHER_FAIL) this.onEvent({ kind: 'fail', code: (value >>> 16) & 0xffff });
  }
  saveState(): DeviceState<null> {
    return { type: 'sifive-test', version: 1, data: null };
  }
  loadState(state: DeviceState<null>): void {
    checkState(state, 'sifive-test', 1);
  }
}
