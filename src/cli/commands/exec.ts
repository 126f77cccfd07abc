/**
 * `typevisor exec NAME [options] -- CMD [ARGS...]`: runs a command in a running VM through its guest agent,
 * writes the command's stdout and stderr to ours and exits with its exit status. Because every status 0-255 may
 * be the command's, this verb's own failures use 200 + the usual code (see EXEC_EXIT), and a timeout is 124 as
 * with timeout(1).
 */
import { parseArgs } from 'node:util';
import { Client, ClientError, EXIT, resolveEndpoint } from '../client.js';
import { COMMON_HELP, COMMON_OPTIONS, enc, printJson } from '../verb.js';

export const summary = 'run a command in a running VM (through the guest agent) and exit with its status';

/** This verb's own exit statuses (the command's status passes through otherwise). */
export const EXEC_EXIT = {
  TIMEOUT: 124, // the command did not finish within --timeout (it was killed); the VM keeps running
  ERROR: 200 + EXIT.ERROR,
  USAGE: 200 + EXIT.USAGE,
  NOT_FOUND: 200 + EXIT.NOT_FOUND,
  CONFLICT: 200 + EXIT.CONFLICT,
  UNREACHABLE: 200 + EXIT.UNREACHABLE,
} as const;

const MAX_STDIN = 8 * 1024 * 1024;
const DEFAULT_TIMEOUT_S = 60;

const USAGE = `usage: typevisor exec NAME [--timeout SECONDS] [-i|--stdin] [--cwd DIR] [-e KEY=VAL]... [--json] -- CMD [ARGS...]

Runs CMD with ARGS in the running VM NAME through its guest agent (each argument reaches the command as is;
there is no shell unless you run one, e.g. -- sh -c 'echo $HOME'). The command's stdout and stderr are
written to ours once it exits; each is kept up to 8 MiB (a warning says when output was cut).

options:
  --timeout SECONDS  kill the command and fail after this long (default ${DEFAULT_TIMEOUT_S}, at most 3600)
  -i, --stdin        send our standard input (up to 8 MiB) to the command (default: it reads /dev/null)
  --cwd DIR          absolute directory in the guest to run in (default /)
  -e, --env KEY=VAL  set an environment variable (repeatable)
  --json             print {exitCode, stdout, stderr (base64), truncated, durationMs} instead of the output

exit status: the command's own (0-255); otherwise 124 timed out, 201 error, 202 usage, 203 not found,
204 conflict/wrong state (VM not running, no guest agent), 205 daemon unreachable

${COMMON_HELP.replace(/\nexit status:.*$/s, '')}`;

class ExecUsageError extends Error {}

interface ExecAnswer {
  exitCode: number;
  stdout: string;
  stderr: string;
  truncated: boolean;
  durationMs: number;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > MAX_STDIN) throw new ClientError(EXIT.ERROR, `standard input exceeds 8 MiB (the limit of --stdin)`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

function write(stream: NodeJS.WriteStream, bytes: Buffer): Promise<void> {
  if (bytes.length === 0) return Promise.resolve();
  return new Promise((resolve) => stream.write(bytes, () => resolve()));
}

function ownStatus(err: ClientError): number {
  if (err.status === 504) return EXEC_EXIT.TIMEOUT;
  return 200 + err.exitCode;
}

export async function run(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const command = dash < 0 ? [] : argv.slice(dash + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: own,
      options: {
        ...COMMON_OPTIONS,
        timeout: { type: 'string' },
        stdin: { type: 'boolean', short: 'i' },
        cwd: { type: 'string' },
        env: { type: 'string', short: 'e', multiple: true },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    console.error(`typevisor exec: ${(err as Error).message}\n\n${USAGE}`);
    return EXEC_EXIT.USAGE;
  }
  const v = parsed.values;
  if (v.help) {
    console.log(USAGE);
    return EXIT.OK;
  }
  try {
    // Without `--`, everything after NAME is the command (it may not start with an option then).
    const [name, ...rest] = parsed.positionals;
    const cmd = dash < 0 ? rest : command;
    if (!name) throw new ExecUsageError('name a VM');
    if (dash >= 0 && rest.length) throw new ExecUsageError(`unexpected ${JSON.stringify(rest[0])} before --`);
    if (cmd.length === 0) throw new ExecUsageError('name a command to run after --');
    let timeoutS = DEFAULT_TIMEOUT_S;
    if (v.timeout !== undefined) {
      timeoutS = Number(v.timeout);
      if (!(timeoutS > 0 && timeoutS <= 3600)) throw new ExecUsageError('--timeout takes seconds, more than 0 and at most 3600');
    }
    const env: Record<string, string> = {};
    for (const pair of v.env ?? []) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new ExecUsageError(`-e takes KEY=VALUE, got ${JSON.stringify(pair)}`);
      env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    const timeoutMs = Math.max(1, Math.round(timeoutS * 1000));
    const body = {
      argv: cmd,
      ...(v.stdin ? { stdin: (await readStdin()).toString('base64') } : {}),
      ...(v.cwd !== undefined ? { cwd: v.cwd } : {}),
      ...(Object.keys(env).length ? { env } : {}),
      timeoutMs,
    };
    const client = new Client(resolveEndpoint({ url: v.url, token: v.token, home: v.home, ca: v.ca }));
    // The HTTP request outlives the command's own timeout, so the daemon's 504 is what we see.
    const answer = await client.json<ExecAnswer>('POST', `/vms/${enc(name)}/exec`, body, timeoutMs + 60_000);
    if (v.json) {
      printJson(answer);
      return answer.exitCode;
    }
    await write(process.stdout, Buffer.from(answer.stdout, 'base64'));
    await write(process.stderr, Buffer.from(answer.stderr, 'base64'));
    if (answer.truncated) console.error('typevisor exec: the output was cut at 8 MiB per stream');
    return answer.exitCode;
  } catch (err) {
    if (err instanceof ExecUsageError) {
      console.error(`typevisor exec: ${err.message}\n\n${USAGE}`);
      return EXEC_EXIT.USAGE;
    }
    if (err instanceof ClientError) {
      if (v.json) console.log(JSON.stringify({ error: { code: err.code ?? 'CLIENT_ERROR', message: err.message } }));
      console.error(`typevisor exec: ${err.message}${err.code ? ` [${err.code}]` : ''}`);
      return ownStatus(err);
    }
    throw err;
  }
}
