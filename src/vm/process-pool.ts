/**
 * The daemon's side of pooled VM processes (process mode's warm pool, kept by src/host/worker-pool.ts): a process
 * spawned ahead of need, detached as a VM process is, that loads and warms the runtime module and then waits with
 * no VM (src/vm/vm-process-start.ts). It holds no VM file, writes nothing in any VM's folder and has no runtime
 * file, so a later daemon can never take it for a VM; it exits when the daemon's end of its control pipe (fd 3)
 * closes. Adopting it sends the init file's path; from there it starts as a process spawned for that VM would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import type { Socket } from 'node:net';
import { POOLED_FLAG, type PoolControlLine, type PooledProcessArgs } from './vm-process-start.js';

export class PooledProcessError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PooledProcessError';
  }
}

export interface PooledProcessSpawn {
  /** node arguments before the entry module (V8 flags, tsx's loader under tsx). */
  nodeArgs: string[];
  /** vm-process.js (or .ts). */
  entry: string;
  args: PooledProcessArgs;
  /** Where the idle process's output goes until it is adopted (default /dev/null). */
  logFile?: string;
  /** How long it may take to load and warm up. */
  timeoutMs: number;
}

/** Longest line the daemon accepts from a pooled process before it is ready. */
const MAX_LINE = 4096;

export class PooledProcess {
  readonly pid: number;
  private buffer = '';
  private lineWaiter: ((line: string) => void) | undefined;
  private readonly exited: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    private readonly control: Socket,
  ) {
    this.pid = child.pid!;
    this.exited = new Promise((resolve) => {
      if (!this.alive) resolve();
      else child.once('exit', () => resolve());
    });
    control.setEncoding('utf8');
    control.on('error', () => {});
    control.on('data', (d: string) => {
      this.buffer += d;
      if (this.buffer.length > MAX_LINE) {
        // Not the process we spawned speaking: nothing it says later can be trusted.
        this.kill();
        return;
      }
      for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        this.lineWaiter?.(line);
      }
    });
  }

  /** Spawns one and resolves once it has loaded and warmed up (`pool-ready`). */
  static async start(o: PooledProcessSpawn): Promise<PooledProcess> {
    const out = openSync(o.logFile ?? '/dev/null', 'a', 0o600);
    let child: ChildProcess;
    try {
      // detached: a session of its own, as a VM process spawned for its VM has (it outlives the daemon once adopted).
      child = spawn(process.execPath, [...o.nodeArgs, o.entry, POOLED_FLAG, JSON.stringify(o.args)], {
        detached: true,
        stdio: ['ignore', out, out, 'pipe'],
        cwd: '/',
      });
    } finally {
      closeSync(out);
    }
    child.unref();
    const control = child.stdio[3] as Socket;
    // Idle, it must not keep the daemon alive.
    control.unref();
    const p = new PooledProcess(child, control);
    try {
      await p.waitFor(
        (line) => line === JSON.stringify({ type: 'pool-ready' } satisfies PoolControlLine),
        o.timeoutMs,
        'ready in the pool',
      );
    } catch (err) {
      p.kill();
      throw err;
    }
    return p;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves when the process has exited (idle or not). */
  died(): Promise<void> {
    return this.exited;
  }

  /**
   * Hands it the VM described in `initFile` and resolves once the VM's socket listens ("ready"), as a process spawned
   * for the VM says; `lastLine` explains an exit before that.
   */
  async adopt(initFile: string, timeoutMs: number, lastLine: () => string | undefined): Promise<void> {
    if (!this.alive) throw new PooledProcessError('the pooled VM process had exited');
    this.control.write(JSON.stringify({ type: 'adopt', initFile } satisfies PoolControlLine) + '\n');
    try {
      await this.waitFor((line) => line === 'ready', timeoutMs, 'ready', lastLine);
    } finally {
      // It closes its end after "ready"; ours is no longer needed (and must not tie the VM to this daemon).
      this.control.destroy();
    }
  }

  /** Ends an idle process (pool closing, memory tight). */
  async dispose(): Promise<void> {
    this.control.destroy();
    this.kill();
    await this.exited;
  }

  private kill(): void {
    if (this.alive) this.child.kill('SIGKILL');
  }

  private waitFor(
    match: (line: string) => boolean,
    timeoutMs: number,
    what: string,
    lastLine?: () => string | undefined,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        clearTimeout(timer);
        this.lineWaiter = undefined;
        this.child.off('exit', onExit);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(
        () => done(new PooledProcessError(`the pooled VM process was not ${what} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        const last = lastLine?.();
        done(
          new PooledProcessError(
            `the VM process exited (${signal ?? `code ${code}`}) before it was ${what}${last ? `: ${last}` : ''}`,
          ),
        );
      };
      if (!this.alive) return onExit(this.child.exitCode, this.child.signalCode);
      this.child.once('exit', onExit);
      this.lineWaiter = (line) => {
        if (match(line)) done();
      };
    });
  }
}
