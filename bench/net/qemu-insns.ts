/**
 * Guest instruction counts of a qemu-system-riscv64 run, from the insn-count.c TCG plugin: the plugin adds to a
 * 64-bit counter in a file both it and this process see, so the count can be read at any moment.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('./insn-count.c', import.meta.url));

/** Builds the plugin once per machine (a C compiler is required: the bench fails without one). */
function plugin(): string {
  const dir = join(tmpdir(), 'typevisor-bench-net');
  mkdirSync(dir, { recursive: true });
  const so = join(dir, 'insn-count.so');
  if (!existsSync(so)) {
    const r = spawnSync('cc', ['-O2', '-shared', '-fPIC', '-fvisibility=hidden', '-o', so, SOURCE], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`building ${SOURCE} failed:\n${r.stderr}`);
  }
  return so;
}

export class InsnCounter {
  private readonly buf = Buffer.alloc(8);

  private constructor(
    private readonly dir: string,
    private readonly fd: number,
    readonly qemuArgs: string[],
  ) {}

  static create(): InsnCounter {
    const so = plugin();
    const dir = mkdtempSync(join(tmpdir(), 'typevisor-insns-'));
    const file = join(dir, 'counter');
    writeFileSync(file, Buffer.alloc(8));
    return new InsnCounter(dir, openSync(file, 'r'), ['-plugin', `${so},counter=${file}`]);
  }

  /** Guest instructions executed so far. */
  read(): number {
    readSync(this.fd, this.buf, 0, 8, 0);
    return Number(this.buf.readBigUInt64LE(0));
  }

  dispose(): void {
    closeSync(this.fd);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
