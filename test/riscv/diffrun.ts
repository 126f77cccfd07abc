/** Runs a Linux-user-style static ELF on qemu-riscv64 and on the hart (S-mode, bare, write/exit shim). */
import { execFileSync } from 'node:child_process';
import { parseElf } from '../../src/machine/loaders/elf.js';
import { CSR_MSTATUS, PRV_S, type HartOptions } from '../../src/riscv/hart.js';
import { loadElf, makeMachine } from './harness.js';

export const QEMU_CPU = 'rv64,zba=true,zbb=true,zbs=true';

export function runOnQemu(elfPath: string): Uint8Array {
  return execFileSync('qemu-riscv64', ['-cpu', QEMU_CPU, elfPath], { maxBuffer: 256 << 20 });
}

export interface HartRunOptions {
  /** Force every instruction through a fresh decode (no effect on semantics; used to diff interpreter paths). */
  ramBytes?: number;
  /** Translation setting for the hart (default: from TYPEVISOR_JIT). */
  jit?: HartOptions['jit'];
}

/** The two engines every differential test runs: the interpreter and the JIT translating every block. */
export const ENGINES: readonly { name: string; jit: HartOptions['jit'] }[] = [
  { name: 'interpreter', jit: false },
  { name: 'jit', jit: { threshold: 0 } },
];

/** Runs the ELF on the hart; returns what it wrote to fd 1. */
export function runOnHart(elfBytes: Uint8Array, opts: HartRunOptions = {}): Uint8Array {
  const m = makeMachine(opts.ramBytes ?? 64 << 20, opts.jit);
  const elf = parseElf(elfBytes);
  loadElf(m, elf);
  const out: Uint8Array[] = [];
  let exited = false;
  m.hart.priv = PRV_S;
  m.hart.writeCsr(CSR_MSTATUS, 1 << 13, 0); // FS = Initial, as Linux starts a user process
  m.hart.ecallHandler = (h) => {
    const nr = h.getX(17);
    if (nr === 64) {
      const buf = new Uint8Array(h.getX(12));
      m.ram.read(h.getX(11), buf);
      out.push(buf);
      h.setX(10, buf.length);
    } else if (nr === 93) {
      exited = true;
      h.requestExit();
    } else throw new Error(`unexpected syscall ${nr}`);
    return true;
  };
  let guard = 0;
  while (!exited) {
    m.hart.run(10_000_000);
    if (++guard > 1000) throw new Error(`program did not exit (pc 0x${m.hart.pc.toString(16)})`);
  }
  const total = out.reduce((s, b) => s + b.length, 0);
  const all = new Uint8Array(total);
  let o = 0;
  for (const b of out) {
    all.set(b, o);
    o += b.length;
  }
  return all;
}
