/** The real `typevisor` CLI as a child process, asynchronously (so several commands can run at once). */
import { spawn } from 'node:child_process';
import { cliArgs } from './paths.js';

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(
  home: string,
  args: string[],
  opts: { input?: string | Uint8Array; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    // --home right after the verb: anything after a `--` belongs to the guest command (exec).
    const [verb, ...rest] = args;
    const child = spawn(process.execPath, cliArgs(verb!, '--home', home, ...rest), {
      env: { ...process.env, TYPEVISOR_URL: '' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`typevisor ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 900_000} ms\n${stderr}`));
    }, opts.timeoutMs ?? 900_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}
