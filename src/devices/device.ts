/**
 * The shape every device has (DEVELOPERS.md "Style"): offset-relative MMIO, interrupts through a line object,
 * a named and versioned serialisable state, and metrics.
 */
export type AccessSize = 1 | 2 | 4;

export interface MmioDevice {
  /** Short stable name, e.g. "uart0", "virtio-blk@10001000". */
  readonly name: string;
  /** Bytes of MMIO window this device decodes. */
  readonly size: number;
  /** Offset-relative read; unimplemented registers read as 0. */
  read(offset: number, size: AccessSize): number;
  /** Offset-relative write; writes to read-only or unknown registers are ignored. */
  write(offset: number, size: AccessSize, value: number): void;
}

/** A level-triggered interrupt line into an interrupt controller (the PLIC for devices). */
export interface IrqLine {
  set(level: boolean): void;
}

export const NO_IRQ: IrqLine = { set() {} };

/** A named, versioned snapshot of a device's state. `data` must be structured-clone friendly. */
export interface DeviceState<T = unknown> {
  readonly type: string;
  readonly version: number;
  readonly data: T;
}

export interface Stateful<T = unknown> {
  saveState(): DeviceState<T>;
  /** Throws a descriptive Error on an unknown type or an unsupported version. */
  loadState(state: DeviceState<T>): void;
}

export interface Metered {
  metrics(): Record<string, number>;
}

export function checkState(state: DeviceState, type: string, version: number): void {
  if (state.type !== type) throw new Error(`state type mismatch: expected ${type}, got ${state.type}`);
  if (state.version !== version) throw new Error(`${type}: unsupported state version ${state.version} (expected ${version})`);
}
