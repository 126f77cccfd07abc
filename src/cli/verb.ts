/**
 * Shared scaffolding of the verbs that talk to the daemon: common options (--url, --token, --home, --json,
 * --help), argument errors → exit 2, daemon errors → their exit code with the daemon's message.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { Client, ClientError, EXIT, EXIT_CODES_HELP, resolveEndpoint } from './client.js';
import { FlagError, inCliWords } from './units.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export const COMMON_OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  ca: { type: 'string' },
  home: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

export const COMMON_HELP = `common options:
  --json          machine-readable output
  --url URL       daemon address: unix:/path, tcp:HOST:PORT (as in 'daemon --listen'; https with --ca),
                  http://HOST:PORT or https://HOST:PORT (default: the socket in the home; $TYPEVISOR_URL)
  --token TOKEN   bearer token for TCP ($TYPEVISOR_TOKEN; default: <home>/token)
  --ca FILE       PEM certificate(s) to trust for an https:// daemon ($TYPEVISOR_CA)
  --home DIR      daemon home ($TYPEVISOR_HOME)
${EXIT_CODES_HELP}`;

export interface VerbContext<V> {
  values: V & { json?: boolean };
  positionals: string[];
  client: Client;
}

export class UsageError extends Error {}

export function defineVerb<O extends Options>(spec: {
  name: string;
  usage: string;
  options: O;
  minArgs?: number;
  maxArgs?: number;
  run(
    ctx: VerbContext<ReturnType<typeof parseArgs<{ options: O & typeof COMMON_OPTIONS; allowPositionals: true }>>['values']>,
  ): Promise<number>;
}): (argv: string[]) => Promise<number> {
  const help = `usage: typevisor ${spec.usage}\n\n${COMMON_HELP}`;
  return async (argv) => {
    let parsed;
    try {
      parsed = parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...spec.options }, allowPositionals: true, strict: true });
    } catch (err) {
      console.error(`typevisor ${spec.name}: ${(err as Error).message}\n\n${help}`);
      return EXIT.USAGE;
    }
    const values = parsed.values as { help?: boolean; url?: string; token?: string; home?: string; ca?: string };
    if (values.help) {
      console.log(help);
      return EXIT.OK;
    }
    const n = parsed.positionals.length;
    if (n < (spec.minArgs ?? 0) || n > (spec.maxArgs ?? Infinity)) {
      console.error(`typevisor ${spec.name}: wrong number of arguments\n\n${help}`);
      return EXIT.USAGE;
    }
    try {
      const client = new Client(resolveEndpoint({ url: values.url, token: values.token, home: values.home, ca: values.ca }));
      return await spec.run({ values: parsed.values as never, positionals: parsed.positionals, client });
    } catch (err) {
      if (err instanceof UsageError || err instanceof FlagError) {
        console.error(`typevisor ${spec.name}: ${err.message}\n\n${help}`);
        return EXIT.USAGE;
      }
      if (err instanceof ClientError) {
        if ((parsed.values as { json?: boolean }).json) {
          console.log(JSON.stringify({ error: { code: err.code ?? 'CLIENT_ERROR', message: err.message } }));
        }
        // The daemon speaks in API fields (memoryMiB); the user typed flags (--memory).
        const message = err.code ? inCliWords(err.message) : err.message;
        console.error(`typevisor ${spec.name}: ${message}${err.code ? ` [${err.code}]` : ''}`);
        return err.exitCode;
      }
      throw err;
    }
  };
}

export function printJson(v: unknown): void {
  console.log(JSON.stringify(v, null, 2));
}

export const enc = encodeURIComponent;
