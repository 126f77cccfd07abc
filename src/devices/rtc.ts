/** Goldfish RTC (google,goldfish-rtc): nanoseconds since the Unix epoch from the host clock, plus one alarm. */
import { checkState, type DeviceState, type IrqLine, type Metered, type MmioDevice, type Stateful } from './device.js';

const TIME_LOW = 0x00; // reading latches TIME_HIGH
const TIME_HIGH = 0x04;
const ALARM_LOW = 0x08; // writing arms the alarm
const ALARM_HIGH = 0x0c;
const IRQ_ENABLED = 0x10;
const CLEAR_ALARM = 0x14;
const ALARM_STATUS = 0x18;
const CLEAR_INTERRUPT = 0x1c;

export interface RtcState {
  offsetNs: string; // guest time minus host time, as a decimal bigint
  alarmNs: string | null;
  alarmHigh: number;
  irqEnabled: boolean;
  irqPending: boolean;
}

export class GoldfishRtc implements MmioDevice, Stateful<RtcState>, Metered {
  readonly name = 'rtc';
  readonly size = 0x1000;
  private latchedHigh = 0;
  private alarmHigh = 0;
  private alarmNs: bigint | null = null;
  private offsetNs = 0n;
  private irqEnabled = false;
  private irqPending = false;

  /** `nowMs` is wall-clock milliseconds since the epoch (Date.now in practice). */
  constructor(
    private readonly irq: IrqLine,
    private readonly nowMs: () => number = () => Date.now(),
  ) {}

  private now(): bigint {
    // BigInt is fine here: this is a rare slow path and ns since 1970 exceed 2^53.
    const ms = this.nowMs();
    return BigInt(Math.floor(ms)) * 1_000_000n + BigInt(Math.floor((ms % 1) * 1e6)) + this.offsetNs;
  }

  read(offset: number, _size?: number): number {
    switch (offset) {
      case TIME_LOW: {
        const t = this.now();
        this.latchedHigh = Number((t >> 32n) & 0xffff_ffffn);
        return Number(t & 0xffff_ffffn);
      }
      case TIME_HIGH:
        return this.latchedHigh;
      case IRQ_ENABLED:
        return this.irqEnabled ? 1 : 0;
      case ALARM_STATUS:
        return this.alarmNs !== null ? 1 : 0;
      case ALARM_LOW:
        return this.alarmNs === null ? 0 : Number(this.alarmNs & 0xffff_ffffn);
      case ALARM_HIGH:
        return this.alarmHigh;
      default:
        return 0;
    }
  }

  write(offset: number, _size: number, value: number): void {
    switch (offset) {
      case TIME_LOW: {
        // Setting the clock: keep the new value as an offset from the host clock.
        const want = (BigInt(this.latchedHigh) << 32n) | BigInt(value >>> 0);
        this.offsetNs += want - this.now();
        break;
      }
      case TIME_HIGH:
        this.latchedHigh = value >>> 0;
        break;
      case ALARM_HIGH:
        this.alarmHigh = value >>> 0;
        break;
      case ALARM_LOW:
        this.alarmNs = (BigInt(this.alarmHigh) << 32n) | BigInt(value >>> 0);
        this.poll();
        break;
      case IRQ_ENABLED:
        this.irqEnabled = (value & 1) !== 0;
        this.update();
        break;
      case CLEAR_ALARM:
        this.alarmNs = null;
        break;
      case CLEAR_INTERRUPT:
        this.irqPending = false;
        this.update();
        break;
    }
  }

  /** Fires the alarm if its time has come; the machine calls this at slice boundaries. */
  poll(): void {
    if (this.alarmNs !== null && this.now() >= this.alarmNs) {
      this.alarmNs = null;
      this.irqPending = true;
      this.update();
    }
  }

  /** Milliseconds until the armed alarm, or Infinity. */
  msUntilAlarm(): number {
    if (this.alarmNs === null) return Infinity;
    return Math.max(0, Number(this.alarmNs - this.now()) / 1e6);
  }

  private update(): void {
    this.irq.set(this.irqEnabled && this.irqPending);
  }

  saveState(): DeviceState<RtcState> {
    return {
      type: 'goldfish-rtc',
      version: 1,
      data: {
        offsetNs: this.offsetNs.toString(),
        alarmNs: this.alarmNs === null ? null : this.alarmNs.toString(),
        alarmHigh: this.alarmHigh,
        irqEnabled: this.irqEnabled,
        irqPending: this.irqPending,
      },
    };
  }
  loadState(state: DeviceState<RtcState>): void {
    checkState(state, 'goldfish-rtc', 1);
    const d = state.data;
    this.offsetNs = BigInt(d.offsetNs);
    this.alarmNs = d.alarmNs === null ? null : BigInt(d.alarmNs);
    this.alarmHigh = d.alarmHigh;
    this.irqEnabled = d.irqEnabled;
    this.irqPending = d.irqPending;
    this.update();
  }
  metrics(): Record<string, number> {
    return { alarmArmed: this.alarmNs !== null ? 1 : 0 };
  }
}
