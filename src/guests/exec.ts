// Running build steps: every step's output goes to the recipe's log file; the last line it printed feeds
// the progress display, and on failure the tail of the log is shown so the error is visible in CI.
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';

export class BuildStepError extends Error {
  constructor(
    readonly step: string,
    readonly logFile: string,
    readonly tail: string,
  ) {
    super(`${step} failed; last lines of ${logFile}:\n${tail}`);
    this.name = 'BuildStepError';
  }
}

export interface RunOptions {
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** Bytes written to the child's stdin (then closed); stdin is empty otherwise. */
  input?: string;
}

function logTail(logFile: string, lines = 40): string {
  try {
    return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Runs `cmd args` with its output appended to logFile; onLine sees each output line as it arrives. */
export function runLogged(
  cmd: string,
  args: readonly string[],
  opts: RunOptions,
  logFile: string,
  onLine: (line: string) => void,
): Promise<void> {
  const shown = [cmd, ...args].join(' ');
  appendFileSync(logFile, `\n$ (cd ${opts.cwd} && ${shown})\n`);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, LC_ALL: 'C', ...opts.env },
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let partial = '';
    const take = (chunk: Buffer) => {
      appendFileSync(logFile, chunk);
      const text = partial + chunk.toString('utf8');
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) if (l.trim()) onLine(l.trim());
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    child.on('error', (err) => {
      appendFileSync(logFile, `spawn error: ${err.message}\n`);
      reject(new BuildStepError(shown, logFile, err.message));
    });
    child.on('close', (code, signal) => {
      if (code === 0) resolvePromise();
      else {
        appendFileSync(logFile, `exit ${code ?? signal}\n`);
        reject(new BuildStepError(`${shown} (exit ${code ?? signal})`, logFile, logTail(logFile)));
      }
    });
  });
}

/** Runs a short query command and returns its stdout, or undefined when it fails or does not exist. */
export function query(cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C', ...env } });
  return r.status === 0 ? r.stdout : undefined;
}

/** True when `cmd` is found on PATH (or is an existing path). */
export function haveCommand(cmd: string): boolean {
  return query('sh', ['-c', 'command -v "$1"', 'sh', cmd]) !== undefined;
}
