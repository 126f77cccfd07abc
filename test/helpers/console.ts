// Expect-style driving of anything with a text stream: a child process's console (stdin/stdout pipes) or
// a socket. Tests wait for text with a deadline, type lines, and get the transcript in every failure.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

export class ExpectTimeoutError extends Error {
  constructor(what: string, timeoutMs: number, transcript: string) {
    super(`timed out after ${timeoutMs} ms waiting for ${what}; last output:\n${transcript}`);
    this.name = 'ExpectTimeoutError';
  }
}

export class StreamClosedError extends Error {
  constructor(what: string, transcript: string) {
    super(`stream ended while waiting for ${what}; last output:\n${transcript}`);
    this.name = 'StreamClosedError';
  }
}

type Pattern = string | RegExp;

/** Output collected from one or more readable streams, searched from a cursor that moves past each match. */
export class Expect {
  /** Everything received so far. */
  output = '';
  private cursor = 0;
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(
    inputs: readonly Readable[],
    private readonly writable?: Writable,
    /** Echo everything received to this function (e.g. for debugging with TYPEVISOR_TEST_VERBOSE). */
    private readonly echo?: (text: string) => void,
  ) {
    let open = inputs.length;
    for (const s of inputs) {
      s.on('data', (chunk: Buffer | string) => {
        const text = chunk.toString();
        this.output += text;
        this.echo?.(text);
        this.wake?.();
      });
      const done = () => {
        if (--open === 0) {
          this.ended = true;
          this.wake?.();
        }
      };
      s.once('end', done);
      s.once('close', () => {
        if (!this.ended && open > 0) done();
      });
    }
  }

  /** The last `chars` characters received, for error messages. */
  tail(chars = 3000): string {
    return this.output.slice(-chars);
  }

  /**
   * Waits until `pattern` appears in output received after the previous match; returns the match (a
   * RegExp's match array, or the string). Rejects after timeoutMs or when the streams end first.
   */
  async waitFor(pattern: Pattern, timeoutMs: number): Promise<RegExpMatchArray> {
    const what = typeof pattern === 'string' ? JSON.stringify(pattern) : String(pattern);
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const m = this.search(pattern);
      if (m) return m;
      if (this.ended) throw new StreamClosedError(what, this.tail());
      const left = deadline - Date.now();
      if (left <= 0) throw new ExpectTimeoutError(what, timeoutMs, this.tail());
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  private search(pattern: Pattern): RegExpMatchArray | undefined {
    const rest = this.output.slice(this.cursor);
    if (typeof pattern === 'string') {
      const i = rest.indexOf(pattern);
      if (i < 0) return undefined;
      this.cursor += i + pattern.length;
      const m = [pattern] as unknown as RegExpMatchArray;
      m.index = this.cursor - pattern.length;
      return m;
    }
    const re = new RegExp(pattern.source, pattern.flags.replace('g', ''));
    const m = re.exec(rest);
    if (!m) return undefined;
    this.cursor += (m.index ?? 0) + m[0].length;
    return m;
  }

  /** Types `line` followed by a newline. */
  send(line: string): void {
    this.write(line + '\n');
  }

  write(text: string): void {
    if (!this.writable) throw new Error('this Expect has no writable side');
    this.writable.write(text);
  }
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A child process driven through its stdin/stdout/stderr, e.g. qemu -nographic or `typevisor run`. */
export class ConsoleProcess extends Expect {
  readonly child: ChildProcess;
  readonly exited: Promise<ExitStatus>;
  private status: ExitStatus | undefined;

  constructor(command: string, args: readonly string[], options: SpawnOptions = {}) {
    const child = spawn(command, args, { ...options, stdio: ['pipe', 'pipe', 'pipe'] });
    const verbose = process.env.TYPEVISOR_TEST_VERBOSE ? (t: string) => process.stderr.write(t) : undefined;
    super([child.stdout!, child.stderr!], child.stdin!, verbose);
    this.child = child;
    // A guest that powers off closes the pipe under us; that is not an error of the test.
    child.stdin!.on('error', () => undefined);
    this.exited = new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) => {
        this.status = { code, signal };
        resolve(this.status);
      });
    });
    this.exited.catch(() => undefined);
  }

  /** The exit status, or undefined while the process runs. */
  get exitStatus(): ExitStatus | undefined {
    return this.status;
  }

  /** Waits for the process to exit; rejects after timeoutMs (the process is left running: call kill()). */
  async waitExit(timeoutMs: number): Promise<ExitStatus> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ExpectTimeoutError('process exit', timeoutMs, this.tail())), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills the process (SIGKILL by default) if it still runs, and waits for it to be gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<ExitStatus> {
    if (!this.status) this.child.kill(signal);
    return this.exited;
  }
}

/** Spawns `command args` for console driving; see ConsoleProcess. */
export function spawnConsole(command: string, args: readonly string[], options: SpawnOptions = {}): ConsoleProcess {
  return new ConsoleProcess(command, args, options);
}
