/**
 * NS16550A UART as on QEMU virt (reg-shift 0, 8-bit registers). Enough of the real chip for Linux's 8250
 * driver and OpenSBI's/U-Boot's ns16550 drivers: 16-byte FIFOs, divisor latch, LSR/IER/IIR/LCR/MCR/MSR/SCR,
 * and the RX-data, THR-empty and line-status interrupts. Transmission is instantaneous; received bytes wait in
 * a host-side queue until the RX FIFO has room, so a fast host never overruns a slow guest.
 */
import { checkState, type DeviceState, type IrqLine, type Metered, type MmioDevice, type Stateful } from './device.js';

const RBR_THR_DLL = 0;
const IER_DLM = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

const IER_ERBFI = 0x01; // received data available
const IER_ETBEI = 0x02; // transmitter holding register empty
const IER_ELSI = 0x04; // receiver line status

const IIR_NO_INT = 0x01;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_RLSI = 0x06;
const IIR_CTI = 0x0c; // character timeout
const IIR_FIFO_ENABLED = 0xc0;

const FCR_FIFO_ENABLE = 0x01;
const FCR_CLEAR_RCVR = 0x02;
const FCR_CLEAR_XMIT = 0x04;

const LCR_DLAB = 0x80;

const MCR_LOOP = 0x10;

const LSR_DR = 0x01; // data ready
const LSR_OE = 0x02; // overrun
const LSR_BI = 0x10; // break
const LSR_THRE = 0x20; // THR empty
const LSR_TEMT = 0x40; // transmitter empty

const MSR_DCD = 0x80;
const MSR_DSR = 0x20;
const MSR_CTS = 0x10;

const FIFO_SIZE = 16;
const TRIGGER_LEVELS = [1, 4, 8, 14];

export interface UartState {
  ier: number;
  lcr: number;
  mcr: number;
  lsr: number;
  scr: number;
  fcr: number;
  dll: number;
  dlm: number;
  thrPending: boolean;
  rx: number[];
  hostQueue: number[];
}

export class Ns16550a implements MmioDevice, Stateful<UartState>, Metered {
  readonly size = 0x100;
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private lsr = LSR_THRE | LSR_TEMT;
  private scr = 0;
  private fcr = 0;
  private dll = 0;
  private dlm = 0;
  /** The THRE interrupt condition, cleared by reading IIR while it is the reported cause or writing THR. */
  private thrPending = false;
  private rx: number[] = [];
  private hostQueue: number[] = [];
  private txBytes = 0;
  private rxBytes = 0;

  constructor(
    private readonly irq: IrqLine,
    private readonly output: (byte: number) => void,
    readonly name = 'uart0',
  ) {}

  /** Host → guest bytes (console input). */
  receive(bytes: Uint8Array | number[]): void {
    for (const b of bytes) this.hostQueue.push(b & 0xff);
    this.refill();
  }

  /** Takes one byte of input outside the register interface (the SBI console getchar), or -1. */
  takeInput(): number {
    const b = this.rx.length ? this.rx.shift()! : (this.hostQueue.shift() ?? -1);
    if (!this.rx.length) this.lsr &= ~(LSR_DR | LSR_BI);
    this.refill();
    return b;
  }

  /** Bytes the host has sent that the guest has not read yet. */
  get pendingInput(): number {
    return this.rx.length + this.hostQueue.length;
  }

  private fifoEnabled(): boolean {
    return (this.fcr & FCR_FIFO_ENABLE) !== 0;
  }

  private refill(): void {
    const cap = this.fifoEnabled() ? FIFO_SIZE : 1;
    while (this.rx.length < cap && this.hostQueue.length) this.rx.push(this.hostQueue.shift()!);
    if (this.rx.length) this.lsr |= LSR_DR;
    this.update();
  }

  read(offset: number, _size?: number): number {
    switch (offset) {
      case RBR_THR_DLL: {
        if (this.lcr & LCR_DLAB) return this.dll;
        const b = this.rx.shift() ?? 0;
        if (!this.rx.length) this.lsr &= ~(LSR_DR | LSR_BI);
        this.rxBytes++;
        this.refill();
        return b;
      }
      case IER_DLM:
        return this.lcr & LCR_DLAB ? this.dlm : this.ier;
      case IIR_FCR: {
        const iir = this.interruptId();
        if (iir === IIR_THRI) {
          this.thrPending = false;
          this.update();
        }
        return iir | (this.fifoEnabled() ? IIR_FIFO_ENABLED : 0);
      }
      case LCR:
        return this.lcr;
      case MCR:
        return this.mcr;
      case LSR: {
        const v = this.lsr;
        // Overrun and break are cleared by reading LSR.
        this.lsr &= ~(LSR_OE | LSR_BI);
        this.update();
        return v;
      }
      case MSR:
        if (this.mcr & MCR_LOOP) {
          // Loopback: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD.
          const m = this.mcr;
          return ((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) | ((m & 0x08) << 4);
        }
        return MSR_DCD | MSR_DSR | MSR_CTS;
      case SCR:
        return this.scr;
      default:
        return 0;
    }
  }

  write(offset: number, _size: number, value: number): void {
    value &= 0xff;
    switch (offset) {
      case RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) {
          this.dll = value;
          return;
        }
        this.txBytes++;
        if (this.mcr & MCR_LOOP) {
          this.hostQueue.push(value);
          this.refill();
        } else this.output(value);
        // The byte left instantly, so THR is empty again and the THRE interrupt re-arms.
        this.thrPending = true;
        this.update();
        return;
      case IER_DLM:
        if (this.lcr & LCR_DLAB) {
          this.dlm = value;
          return;
        }
        {
          const was = this.ier;
          this.ier = value & 0x0f;
          // Enabling ETBEI while THR is empty raises THRE at once, as the real chip does.
          if (!(was & IER_ETBEI) && this.ier & IER_ETBEI && this.lsr & LSR_THRE) this.thrPending = true;
          this.update();
        }
        return;
      case IIR_FCR:
        if (value & FCR_CLEAR_RCVR) {
          this.rx = [];
          this.lsr &= ~(LSR_DR | LSR_BI);
        }
        if (value & FCR_CLEAR_XMIT) this.lsr |= LSR_THRE | LSR_TEMT;
        this.fcr = value & 0xc9;
        if (!this.fifoEnabled()) this.fcr = 0;
        this.refill();
        return;
      case LCR:
        this.lcr = value;
        return;
      case MCR:
        this.mcr = value & 0x1f;
        return;
      case SCR:
        this.scr = value;
        return;
    }
  }

  private interruptId(): number {
    if (this.ier & IER_ELSI && this.lsr & (LSR_OE | LSR_BI)) return IIR_RLSI;
    if (this.ier & IER_ERBFI && this.lsr & LSR_DR) {
      const trigger = this.fifoEnabled() ? TRIGGER_LEVELS[(this.fcr >> 6) & 3]! : 1;
      // Below the trigger level a real chip reports a character timeout after four character times.
      return this.rx.length >= trigger ? IIR_RDI : IIR_CTI;
    }
    if (this.ier & IER_ETBEI && this.thrPending) return IIR_THRI;
    // Modem status (IER_EDSSI) never changes here, so it never interrupts.
    return IIR_NO_INT;
  }

  private update(): void {
    this.irq.set(this.interruptId() !== IIR_NO_INT);
  }

  saveState(): DeviceState<UartState> {
    return {
      type: 'ns16550a',
      version: 1,
      data: {
        ier: this.ier,
        lcr: this.lcr,
        mcr: this.mcr,
        lsr: this.lsr,
        scr: this.scr,
        fcr: this.fcr,
        dll: this.dll,
        dlm: this.dlm,
        thrPending: this.thrPending,
        rx: [...this.rx],
        hostQueue: [...this.hostQueue],
      },
    };
  }
  loadState(state: DeviceState<UartState>): void {
    checkState(state, 'ns16550a', 1);
    Object.assign(this, { ...state.data, rx: [...state.data.rx], hostQueue: [...state.data.hostQueue] });
    this.update();
  }
  metrics(): Record<string, number> {
    return { txBytes: this.txBytes, rxBytes: this.rxBytes, rxQueued: this.pendingInput };
  }
}
