/**
 * Test harness: assembles/links RISC-V sources with the cross binutils (cached by content hash in the OS temp
 * dir), and runs them on a Hart over GuestRam at 0x8000_0000 plus a fake CLINT (msip/mtimecmp/mtime at the
 * virt addresses) and a poweroff register, with HTIF tohost polling.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { GuestRam } from '../../src/machine/memory.js';
import { jitFromEnv } from '../../src/riscv/jit/index.js';
import { HART_REGION_BYTES } from '../../src/riscv/jit/wasm/layout.js';
import { withCodeShare } from '../../src/riscv/jit/wasm/share.js';
import { createLinearRam } from '../../src/vm/linear-ram.js';
import { parseElf, type ElfImage } from '../../src/machine/loaders/elf.js';
import { Hart, MIP_MSIP, IRQ_MSI, IRQ_MTI, type HartOptions } from '../../src/riscv/hart.js';
import { Htif, type HtifResult } from '../../src/riscv/htif.js';
import type { Bus } from '../../src/riscv/bus.js';
import { createGuestAtomics, type GuestAtomics } from '../../src/riscv/atomics.js';

export const RAM_BASE = 0x8000_0000;
export const PROGRAMS_DIR = join(repoRoot, 'test/riscv/programs');
export const DEFAULT_LINKER_SCRIPT = join(PROGRAMS_DIR, 'link.ld');
const cacheDir = join(tmpdir(), 'typevisor-asm-cache');

/** Path of a build output cached by `key`; `build` writes it on a miss. */
export function cachedFile(key: string, ext: string, build: (out: string, dir: string) => void): string {
  mkdirSync(cacheDir, { recursive: true });
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 24);
  const out = join(cacheDir, `${hash}${ext}`);
  if (!existsSync(out)) {
    const dir = join(cacheDir, `${hash}.${process.pid}.work`);
    mkdirSync(dir, { recursive: true });
    const tmp = join(dir, `out${ext}`);
    build(tmp, dir);
    renameSync(tmp, out);
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

/** Assembles and links a bare-metal source (entry `_start`, text at `textAddr`) into an ELF. */
export function buildElf(source: string, opts: BuildOptions = {}): Uint8Array {
  return readFileSync(buildElfFile(source, opts));
}

export interface BuildOptions {
  linkerScript?: string;
  march?: string;
}

/** Like buildElf, but returns the cached file's path (for qemu). */
export function buildElfFile(source: string, opts: BuildOptions = {}): string {
  const march = opts.march ?? 'rv64gc_zba_zbb_zbs_zicsr_zifencei';
  const key = JSON.stringify({ v: 2, source, ls: opts.linkerScript ?? readFileSync(DEFAULT_LINKER_SCRIPT, 'utf8'), march });
  return cachedFile(key, '.elf', (out, dir) => {
    const src = join(dir, 'prog.S');
    writeFileSync(src, source);
    const obj = join(dir, 'prog.o');
    execFileSync('riscv64-linux-gnu-gcc', ['-c', '-x', 'assembler-with-cpp', `-march=${march}`, '-mabi=lp64d', '-o', obj, src]);
    const ldArgs = ['-nostdlib', '-static', '--no-relax', '-o', out, obj];
    if (opts.linkerScript) {
      const ls = join(dir, 'link.ld');
      writeFileSync(ls, opts.linkerScript);
      ldArgs.push('-T', ls);
    } else ldArgs.push('-T', DEFAULT_LINKER_SCRIPT);
    execFileSync('riscv64-linux-gnu-ld', ldArgs);
  });
}

/** A minimal CLINT (virt layout) so tests can raise timer and software interrupts. */
export class FakeClint {
  msip = 0;
  mtimecmpLo = -1;
  mtimecmpHi = -1;
  time = 0;
  constructor(private readonly hart: () => Hart) {}
  get mtimecmp(): number {
    return (this.mtimecmpHi >>> 0) * 4294967296 + (this.mtimecmpLo >>> 0);
  }
  update(): void {
    const h = this.hart();
    h.setPending(IRQ_MSI, (this.msip & 1) !== 0);
    h.setPending(IRQ_MTI, this.time >= this.mtimecmp);
  }
  read(off: number): number | undefined {
    if (off === 0) return this.msip;
    if (off === 0x4000) return this.mtimecmpLo >>> 0;
    if (off === 0x4004) return this.mtimecmpHi >>> 0;
    if (off === 0xbff8) return this.time % 4294967296;
    if (off === 0xbffc) return Math.floor(this.time / 4294967296);
    return undefined;
  }
  write(off: number, value: number): boolean {
    if (off === 0) this.msip = value & 1;
    else if (off === 0x4000) this.mtimecmpLo = value | 0;
    else if (off === 0x4004) this.mtimecmpHi = value | 0;
    else return false;
    this.update();
    return true;
  }
}

export interface Machine {
  ram: GuestRam;
  bus: Bus;
  hart: Hart;
  clint: FakeClint;
  /** Bytes written to the fake console at 0x1000_0000. */
  console: number[];
  poweredOff: boolean;
}

/** Room for the WebAssembly JIT's hart state past RAM (two harts' regions). */
const WASM_RESERVE = 2 * HART_REGION_BYTES;

export interface MachineOptions {
  /**
   * Wraps the cross-thread atomics (src/riscv/atomics.ts) over linear RAM's memory into the bus (forces linear RAM);
   * `wrap` may interpose on them (e.g. count calls). Default: no atomics.
   */
  atomics?: boolean | ((a: GuestAtomics) => GuestAtomics);
  /**
   * The bus offers a code-sharing channel (src/riscv/jit/wasm/share.ts), as a board with several harts does: the
   * WebAssembly JIT then translates code any hart can run, and harts made on `bus` share their compiled blocks.
   */
  codeShare?: boolean;
}

/** Whether makeMachine's RAM is linear for this `jit` setting (from TYPEVISOR_JIT when undefined). */
export function linearByDefault(jit?: HartOptions['jit']): boolean {
  const wantsWasm = (jit === undefined ? jitFromEnv() : jit || null)?.backend === 'wasm';
  return wantsWasm || process.env.TYPEVISOR_RAM === 'linear';
}

/**
 * `jit` overrides the hart's translation setting (default: from TYPEVISOR_JIT). RAM is linear (one
 * WebAssembly.Memory) when TYPEVISOR_RAM=linear, the WebAssembly JIT is asked for (it needs that layout) or atomics.
 */
export function makeMachine(ramBytes = 16 << 20, jit?: HartOptions['jit'], opts: MachineOptions = {}): Machine {
  let linear = null;
  if (linearByDefault(jit) || opts.atomics) {
    linear = createLinearRam(ramBytes, WASM_RESERVE);
    if (!linear) throw new Error('linear RAM is not available on this host');
  }
  const ram = new GuestRam(ramBytes, RAM_BASE, linear);
  const consoleBytes: number[] = [];
  const ref: { hart?: Hart } = {};
  const clint = new FakeClint(() => ref.hart!);
  const m: Partial<Machine> = { ram, clint, console: consoleBytes, poweredOff: false };
  const plainBus = ram.asBus({
    mmioRead: (pa, size) => {
      if (pa >= 0x200_0000 && pa < 0x201_0000 && size === 4) return clint.read(pa - 0x200_0000);
      if (pa === 0x1000_0005) return 0x60; // UART LSR: transmitter empty
      if (pa >= 0x1000_0000 && pa < 0x1000_0100) return 0;
      return undefined;
    },
    mmioWrite: (pa, size, value) => {
      if (pa >= 0x200_0000 && pa < 0x201_0000 && size === 4) return clint.write(pa - 0x200_0000, value);
      if (pa === 0x1000_0000) {
        consoleBytes.push(value & 0xff);
        return true;
      }
      if (pa >= 0x1000_0000 && pa < 0x1000_0100) return true;
      if (pa === 0x10_0000) {
        m.poweredOff = true;
        ref.hart!.requestExit();
        return true;
      }
      return false;
    },
  });
  let atomics: GuestAtomics | null = null;
  if (opts.atomics) {
    atomics = createGuestAtomics(linear!.memory!);
    if (!atomics) throw new Error('this engine has no WebAssembly threads for guest atomics');
    if (typeof opts.atomics === 'function') atomics = opts.atomics(atomics);
  }
  let bus: Bus = atomics ? { ...plainBus, atomics } : plainBus;
  if (opts.codeShare) bus = withCodeShare(bus);
  const hart = new Hart(bus, { hartId: 0, readTime: () => clint.time, ...(jit === undefined ? {} : { jit }) });
  ref.hart = hart;
  m.bus = bus;
  m.hart = hart;
  return m as Machine;
}

export function loadElf(m: Machine, elf: ElfImage): void {
  for (const seg of elf.segments) {
    m.ram.write(seg.paddr, seg.data);
    if (seg.memSize > seg.data.length) m.ram.write(seg.paddr + seg.data.length, new Uint8Array(seg.memSize - seg.data.length));
  }
  m.hart.reset(elf.entry);
}

export interface ProgramResult {
  result: HtifResult | undefined;
  instructions: number;
  console: string;
  hart: Hart;
}

export interface RunOptions {
  jit?: HartOptions['jit'];
  /** makeMachine's codeShare: the JIT translates code any hart can run. */
  codeShare?: boolean;
  /** Called with the machine before the first instruction (e.g. to hook traps). */
  setup?: (m: Machine) => void;
}

/** Runs a bare-metal ELF until HTIF reports, poweroff, or `maxInstructions`. mtime advances 1 tick per 100 instructions. */
export function runProgram(elfBytes: Uint8Array, maxInstructions = 50_000_000, opts: RunOptions = {}): ProgramResult {
  const m = makeMachine(undefined, opts.jit, { codeShare: opts.codeShare === true });
  const elf = parseElf(elfBytes);
  loadElf(m, elf);
  const htif = Htif.fromSymbols(elf.symbols, m.ram);
  opts.setup?.(m);
  let total = 0;
  let result: HtifResult | undefined;
  while (total < maxInstructions && !m.poweredOff) {
    const n = m.hart.run(1000);
    total += n;
    m.clint.time += n === 0 ? 1000 : Math.max(1, Math.floor(n / 100));
    m.clint.update();
    result = htif?.poll();
    if (result) break;
  }
  return { result, instructions: total, console: String.fromCharCode(...m.console), hart: m.hart };
}

export { MIP_MSIP };
