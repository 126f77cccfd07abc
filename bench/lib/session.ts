/**
 * Drives a guest (typevisor or qemu-system-riscv64) over its console for benchmarks: boot to the ready marker,
 * type each step's command, time it on the host until the step's end marker, then power off.
 */
import { spawn } from 'node:child_process';
import { repoRoot } from '../../test/helpers/paths.js';

export interface SessionResult {
  /** Everything the guest printed. */
  out: string;
  /** Host milliseconds from typing each step to its end marker. */
  stepMs: number[];
}

export interface SessionOptions {
  /** Console text that means the guest is at its shell. */
  ready: string;
  /** Shell commands, run one after the other. */
  steps: string[];
  timeoutMs: number;
}

/**
 * The end marker is typed as `$((n+1))` arithmetic, so the console's echo of the command line never contains
 * the expanded text the host waits for.
 */
const endMarker = (i: number): string => `STEP-${1000 + i}-END`;

export function runSession(cmd: string, args: string[], opts: SessionOptions): Promise<SessionResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let step = -1;
    let stepStart = 0;
    let finished = false;
    const stepMs: number[] = [];
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd}: timed out in step ${step}\n${out.slice(-3000)}\n${err}`));
    }, opts.timeoutMs);
    const next = (): void => {
      step++;
      if (step === opts.steps.length) {
        finished = true;
        clearTimeout(timer);
        child.stdin.write('poweroff -f\n');
        const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
        child.on('exit', () => {
          clearTimeout(kill);
          resolve({ out, stepMs });
        });
        return;
      }
      stepStart = performance.now();
      child.stdin.write(`${opts.steps[step]}; echo STEP-$((${999 + step}+1))-END\n`);
    };
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (step === -1 && out.includes(opts.ready)) next();
      else if (step >= 0 && !finished && out.includes(endMarker(step))) {
        stepMs.push(performance.now() - stepStart);
        next();
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      if (!finished) {
        clearTimeout(timer);
        reject(new Error(`${cmd} exited (${code}) in step ${step}\n${out.slice(-3000)}\n${err}`));
      }
    });
  });
}
