/** Drives `typevisor run` through pipes: collects console output, waits for text, types commands. */
import { spawn, type ChildProcess } from 'node:child_process';
import { cliArgs, repoRoot } from '../helpers/paths.js';
import { TextWaiter } from '../helpers/text-waiter.js';

export class ConsoleDriver {
  readonly child: ChildProcess;
  output = '';
  stderr = '';
  readonly exit: Promise<number | null>;
  private readonly waiter = new TextWaiter();

  constructor(args: string[]) {
    this.child = spawn(process.execPath, cliArgs('run', ...args), { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => {
      this.output += d.toString('latin1');
      this.waiter.notify();
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exit = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  /** Resolves when `pattern` appears in the output after `from` (default: anywhere); rejects after `ms`. */
  waitFor(pattern: string | RegExp, ms: number, from = 0): Promise<number> {
    return this.waiter.waitFor(
      () => this.output,
      pattern,
      ms,
      from,
      () =>
        `timed out after ${ms} ms waiting for ${String(pattern)}\n--- console tail ---\n${this.output.slice(-1500)}\n--- stderr ---\n${this.stderr}`,
    );
  }

  type(text: string): void {
    this.child.stdin!.write(text);
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }

  /** User + system CPU seconds the child has used so far (Linux /proc). */
  async cpuSeconds(): Promise<number> {
    const { readFile } = await import('node:fs/promises');
    const stat = await readFile(`/proc/${this.child.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
    return ticks / 100; // USER_HZ
  }
}
