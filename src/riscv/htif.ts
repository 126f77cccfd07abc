/**
 * The HTIF `tohost` protocol used by riscv-tests style bare-metal programs: the program writes a 64-bit value
 * to the `tohost` symbol; 1 means pass (exit status 0) and (n << 1) | 1 means fail with code n. Other values
 * (proxy syscalls) are not supported and are acknowledged by clearing tohost.
 */

/** Reads 32-bit little-endian words of guest physical memory (GuestRam.readU32 fits). */
export interface WordReader {
  readU32(paddr: number): number;
}
export interface WordWriter {
  writeU32(paddr: number, value: number): void;
}

export type HtifResult = { readonly kind: 'pass' } | { readonly kind: 'fail'; readonly code: number };

export class Htif {
  constructor(
    readonly tohost: number,
    private readonly mem: WordReader & WordWriter,
  ) {}

  /** Finds `tohost` in an ELF symbol table; undefined when the program does not use HTIF. */
  static fromSymbols(symbols: ReadonlyMap<string, number>, mem: WordReader & WordWriter): Htif | undefined {
    const addr = symbols.get('tohost');
    return addr === undefined ? undefined : new Htif(addr, mem);
  }

  /** Checks tohost; returns the program's verdict once it has written one. */
  poll(): HtifResult | undefined {
    const lo = this.mem.readU32(this.tohost);
    const hi = this.mem.readU32(this.tohost + 4);
    if (lo === 0 && hi === 0) return undefined;
    if ((lo & 1) === 1) {
      const code = Math.floor(((hi >>> 0) * 4294967296 + (lo >>> 0)) / 2);
      return code === 0 ? { kind: 'pass' } : { kind: 'fail', code };
    }
    // A proxy-syscall request: unsupported; acknowledge so the program does not spin forever on it.
    this.mem.writeU32(this.tohost, 0);
    this.mem.writeU32(this.tohost + 4, 0);
    return undefined;
  }

  /** The process exit status for a result: 0 for pass, the failure code (at least 1) otherwise. */
  static exitStatus(result: HtifResult): number {
    return result.kind === 'pass' ? 0 : Math.max(1, Math.min(255, result.code));
  }
}
