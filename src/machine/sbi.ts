/**
 * The built-in SBI firmware (RISC-V SBI spec v2.0), implemented in TypeScript and reached through the hart's
 * ecall hook, so S-mode kernels boot without an M-mode firmware image. Extensions: base, TIME, IPI, RFENCE,
 * HSM, SRST, DBCN and the legacy v0.1 calls.
 */
import type { GuestRam } from './memory.js';
import type { HartPort } from './hart-port.js';

export const SBI_SUCCESS = 0;
export const SBI_ERR_FAILED = -1;
export const SBI_ERR_NOT_SUPPORTED = -2;
export const SBI_ERR_INVALID_PARAM = -3;
export const SBI_ERR_INVALID_ADDRESS = -5;
export const SBI_ERR_ALREADY_AVAILABLE = -6;
export const SBI_ERR_ALREADY_STOPPED = -8;

export const EXT_LEGACY_SET_TIMER = 0x00;
export const EXT_LEGACY_PUTCHAR = 0x01;
export const EXT_LEGACY_GETCHAR = 0x02;
export const EXT_LEGACY_CLEAR_IPI = 0x03;
export const EXT_LEGACY_SEND_IPI = 0x04;
export const EXT_LEGACY_REMOTE_FENCE_I = 0x05;
export const EXT_LEGACY_REMOTE_SFENCE_VMA = 0x06;
export const EXT_LEGACY_REMOTE_SFENCE_VMA_ASID = 0x07;
export const EXT_LEGACY_SHUTDOWN = 0x08;
export const EXT_BASE = 0x10;
export const EXT_TIME = 0x54494d45; // "TIME"
export const EXT_IPI = 0x735049; // "sPI"
export const EXT_RFENCE = 0x52464e43; // "RFNC"
export const EXT_HSM = 0x48534d; // "HSM"
export const EXT_SRST = 0x53525354; // "SRST"
export const EXT_DBCN = 0x4442434e; // "DBCN"

export const SBI_SPEC_VERSION = 2 << 24; // v2.0
export const SBI_IMPL_ID = 0x7476; // "tv": typevisor (not a registered id; no registered one fits)
export const SBI_IMPL_VERSION = 1;

export const HSM_STARTED = 0;
export const HSM_STOPPED = 1;
export const HSM_START_PENDING = 2;
export const HSM_SUSPENDED = 4;

const MIP_SSIP = 1;
const MIP_STIP = 5;

export type ResetKind = 'shutdown' | 'reboot';

/** What the firmware needs from the board. */
export interface SbiHost {
  readonly harts: readonly HartPort[];
  readonly ram: GuestRam;
  consoleWrite(bytes: Uint8Array): void;
  /** One byte of console input, or -1. */
  consoleRead(): number;
  systemReset(kind: ResetKind, reason: number): void;
  /** Marks a hart running/stopped for the scheduler. */
  setHartRunning(hartId: number, running: boolean): void;
  /**
   * Where the HSM states live when harts run on several threads (shared memory, one word per hart); by default an
   * array of this firmware's own.
   */
  hsmStates?: Int32Array;
  /**
   * Starts a stopped hart at `start` in S-mode with a0 = its id and a1 = `opaque`, when that hart is not on this
   * thread (it puts itself in that state); by default the firmware sets the hart up itself and marks it running.
   */
  startHart?(hartId: number, start: number, opaque: number): void;
}

type Ret = [error: number, value: number];

/** A 64-bit argument register as a JS number; values above 2^53 come back as Infinity ("never", "all"). */
function argNumber(hart: HartPort, reg: number): number {
  const { lo, hi } = hart.getX(reg);
  if (hi >= 0x20_0000) return hi === 0xffff_ffff && lo === 0xffff_ffff ? -1 : Infinity;
  return hi * 0x1_0000_0000 + lo;
}

/** A 64-bit argument register as a signed JS number (virtual addresses; exact within ±2^53). */
function signedArg(hart: HartPort, reg: number): number {
  const { lo, hi } = hart.getX(reg);
  return (hi | 0) * 0x1_0000_0000 + lo;
}

const A0 = 10;
const A1 = 11;
const A2 = 12;
const A3 = 13;
const A4 = 14;
const A6 = 16;
const A7 = 17;

/** Puts a hart where SBI HSM start leaves it: S-mode at `start`, satp = 0, a0 = hartid, a1 = opaque (SBI spec §9.1). */
export function startInSupervisor(target: HartPort, start: number, opaque: number): void {
  target.reset(start);
  target.enterSupervisor(start);
  target.setX(A0, target.hartId);
  target.setX(A1, opaque);
}

export class BuiltinSbi {
  readonly hsm: number[] | Int32Array;
  calls = 0;

  constructor(private readonly host: SbiHost) {
    this.hsm = host.hsmStates ?? host.harts.map((_, i) => (i === 0 ? HSM_STARTED : HSM_STOPPED));
  }

  /** Installs the ecall hook on every hart. */
  install(): void {
    for (const h of this.host.harts) h.ecallHandler = (hart) => this.handle(hart);
  }

  handle(hart: HartPort): boolean {
    this.calls++;
    const ext = hart.getX(A7).lo;
    const fid = hart.getX(A6).lo;
    if (ext <= EXT_LEGACY_SHUTDOWN) {
      const v = this.legacy(hart, ext);
      hart.setX(A0, v);
      return true;
    }
    const [err, value] = this.call(hart, ext, fid);
    hart.setX(A0, err);
    hart.setX(A1, value);
    return true;
  }

  private call(hart: HartPort, ext: number, fid: number): Ret {
    switch (ext) {
      case EXT_BASE:
        return this.base(hart, fid);
      case EXT_TIME:
        if (fid !== 0) return [SBI_ERR_NOT_SUPPORTED, 0];
        this.setTimer(hart, argNumber(hart, A0));
        return [SBI_SUCCESS, 0];
      case EXT_IPI:
        if (fid !== 0) return [SBI_ERR_NOT_SUPPORTED, 0];
        return this.forTargets(hart, (t) => t.setPending(MIP_SSIP, true));
      case EXT_RFENCE:
        // remote fence.i skips the caller: its decode cache is coherent with its own stores, and Linux executes a
        // local fence.i right before this call (flush_icache_all) — flushing twice doubled boot-time re-decoding.
        if (fid === 0) return this.forTargets(hart, (t) => t !== hart && t.flushDecodeCache());
        if (fid === 1 || fid === 2) {
          const start = signedArg(hart, A2);
          const size = argNumber(hart, A3);
          const asid = fid === 2 ? hart.getX(A4).lo & 0xffff : -1;
          return this.forTargets(hart, (t) => t.flushTlbRange(start, size, asid));
        }
        return [SBI_ERR_NOT_SUPPORTED, 0]; // hypervisor fences: no H extension
      case EXT_HSM:
        return this.hsmCall(hart, fid);
      case EXT_SRST:
        return this.srst(hart, fid);
      case EXT_DBCN:
        return this.dbcn(hart, fid);
      default:
        return [SBI_ERR_NOT_SUPPORTED, 0];
    }
  }

  private base(hart: HartPort, fid: number): Ret {
    switch (fid) {
      case 0:
        return [SBI_SUCCESS, SBI_SPEC_VERSION];
      case 1:
        return [SBI_SUCCESS, SBI_IMPL_ID];
      case 2:
        return [SBI_SUCCESS, SBI_IMPL_VERSION];
      case 3: {
        const ext = hart.getX(A0).lo;
        const known = [EXT_TIME, EXT_IPI, EXT_RFENCE, EXT_HSM, EXT_SRST, EXT_DBCN, EXT_BASE];
        const legacy = hart.getX(A0).hi === 0 && ext <= EXT_LEGACY_SHUTDOWN;
        return [SBI_SUCCESS, known.includes(ext) || legacy ? 1 : 0];
      }
      case 4: // mvendorid
      case 5: // marchid
      case 6: // mimpid
        return [SBI_SUCCESS, 0];
      default:
        return [SBI_ERR_NOT_SUPPORTED, 0];
    }
  }

  /** Programs the S-mode timer: with Sstc the hart raises STIP when time >= stimecmp. */
  private setTimer(hart: HartPort, value: number): void {
    hart.stimecmp = value < 0 ? Infinity : value;
    hart.setPending(MIP_STIP, false);
  }

  /** Applies `fn` to the harts selected by (hart_mask a0, hart_mask_base a1). */
  private forTargets(hart: HartPort, fn: (t: HartPort) => void): Ret {
    const mask = hart.getX(A0);
    const base = argNumber(hart, A1);
    const harts = this.host.harts;
    if (base === -1) {
      harts.forEach(fn);
      return [SBI_SUCCESS, 0];
    }
    const targets: HartPort[] = [];
    for (let bit = 0; bit < 64; bit++) {
      const set = bit < 32 ? (mask.lo >>> bit) & 1 : (mask.hi >>> (bit - 32)) & 1;
      if (!set) continue;
      const id = base + bit;
      if (!Number.isFinite(id) || id >= harts.length) return [SBI_ERR_INVALID_PARAM, 0];
      targets.push(harts[id]!);
    }
    targets.forEach(fn);
    return [SBI_SUCCESS, 0];
  }

  private hsmCall(hart: HartPort, fid: number): Ret {
    switch (fid) {
      case 0: {
        const id = argNumber(hart, A0);
        const target = this.host.harts[id];
        if (!target) return [SBI_ERR_INVALID_PARAM, 0];
        if (this.hsm[id] !== HSM_STOPPED) return [SBI_ERR_ALREADY_AVAILABLE, 0];
        const start = argNumber(hart, A1);
        const opaque = argNumber(hart, 12);
        if (!this.host.ram.contains(start, 4)) return [SBI_ERR_INVALID_ADDRESS, 0];
        this.hsm[id] = HSM_STARTED;
        const arg = opaque === Infinity ? 0 : opaque;
        if (this.host.startHart) {
          this.host.startHart(id, start, arg);
          return [SBI_SUCCESS, 0];
        }
        startInSupervisor(target, start, arg);
        this.host.setHartRunning(id, true);
        return [SBI_SUCCESS, 0];
      }
      case 1:
        if (this.hsm[hart.hartId] !== HSM_STARTED) return [SBI_ERR_FAILED, 0];
        this.hsm[hart.hartId] = HSM_STOPPED;
        this.host.setHartRunning(hart.hartId, false);
        hart.requestExit();
        return [SBI_SUCCESS, 0];
      case 2: {
        const id = argNumber(hart, A0);
        const s = this.hsm[id];
        return s === undefined ? [SBI_ERR_INVALID_PARAM, 0] : [SBI_SUCCESS, s];
      }
      case 3: {
        const type = hart.getX(A0);
        // Default retentive suspend behaves as WFI: returning at once is a legal (spurious) wake-up.
        if (type.lo === 0 && type.hi === 0) return [SBI_SUCCESS, 0];
        return [SBI_ERR_NOT_SUPPORTED, 0];
      }
      default:
        return [SBI_ERR_NOT_SUPPORTED, 0];
    }
  }

  private srst(hart: HartPort, fid: number): Ret {
    if (fid !== 0) return [SBI_ERR_NOT_SUPPORTED, 0];
    const type = hart.getX(A0).lo;
    const reason = hart.getX(A1).lo;
    if (hart.getX(A0).hi !== 0 || type > 2) return [SBI_ERR_INVALID_PARAM, 0];
    this.host.systemReset(type === 0 ? 'shutdown' : 'reboot', reason);
    hart.requestExit();
    return [SBI_SUCCESS, 0];
  }

  private dbcn(hart: HartPort, fid: number): Ret {
    if (fid === 2) {
      this.host.consoleWrite(new Uint8Array([hart.getX(A0).lo & 0xff]));
      return [SBI_SUCCESS, 0];
    }
    if (fid !== 0 && fid !== 1) return [SBI_ERR_NOT_SUPPORTED, 0];
    const n = argNumber(hart, A0);
    const lo = hart.getX(A1).lo;
    const hi = hart.getX(12).lo;
    if (hi >= 0x20_0000) return [SBI_ERR_INVALID_PARAM, 0];
    const addr = hi * 0x1_0000_0000 + lo;
    const len = Math.min(n, 4096);
    if (!this.host.ram.contains(addr, len)) return [SBI_ERR_INVALID_PARAM, 0];
    if (fid === 0) {
      const buf = new Uint8Array(len);
      this.host.ram.read(addr, buf);
      this.host.consoleWrite(buf);
      return [SBI_SUCCESS, len];
    }
    let got = 0;
    while (got < len) {
      const b = this.host.consoleRead();
      if (b < 0) break;
      this.host.ram.writeU8(addr + got++, b);
    }
    return [SBI_SUCCESS, got];
  }

  private legacy(hart: HartPort, ext: number): number {
    switch (ext) {
      case EXT_LEGACY_SET_TIMER:
        this.setTimer(hart, argNumber(hart, A0));
        return 0;
      case EXT_LEGACY_PUTCHAR:
        this.host.consoleWrite(new Uint8Array([hart.getX(A0).lo & 0xff]));
        return 0;
      case EXT_LEGACY_GETCHAR:
        return this.host.consoleRead();
      case EXT_LEGACY_CLEAR_IPI:
        hart.setPending(MIP_SSIP, false);
        return 0;
      case EXT_LEGACY_SEND_IPI:
      case EXT_LEGACY_REMOTE_FENCE_I:
      case EXT_LEGACY_REMOTE_SFENCE_VMA:
      case EXT_LEGACY_REMOTE_SFENCE_VMA_ASID: {
        // v0.1 passes a pointer to the hart mask; with the MMU on it is a virtual address we can't translate
        // here, so treat an untranslatable pointer as "all harts" (fences and IPIs to extra harts are harmless).
        const ptr = argNumber(hart, A0);
        let mask = -1;
        if (this.host.ram.contains(ptr, 8)) mask = this.host.ram.readU32(ptr);
        this.host.harts.forEach((t, i) => {
          if (i < 32 && !((mask >>> i) & 1)) return;
          if (ext === EXT_LEGACY_SEND_IPI) t.setPending(MIP_SSIP, true);
          else if (ext === EXT_LEGACY_REMOTE_FENCE_I) {
            if (t !== hart) t.flushDecodeCache();
          } else t.flushTlb();
        });
        return 0;
      }
      case EXT_LEGACY_SHUTDOWN:
        this.host.systemReset('shutdown', 0);
        hart.requestExit();
        return 0;
      default:
        return SBI_ERR_NOT_SUPPORTED;
    }
  }
}
