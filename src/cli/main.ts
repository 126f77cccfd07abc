#!/usr/bin/env node
/**
 * The `typevisor` command. Each verb lives in its own module under ./commands/ and exports
 * `run(argv: string[]): Promise<number>` (the exit status) plus a one-line `summary`.
 * Verbs are loaded on demand so `typevisor run` does not pay for the API server's imports.
 */
import { readdirSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Command {
  readonly summary: string;
  run(argv: string[]): Promise<number>;
}

/** Verbs that are spelled differently from their module file. */
const ALIASES: Record<string, string> = { ls: 'list', rm: 'delete' };
const here = dirname(fileURLToPath(import.meta.url));
const ext = extname(fileURLToPath(import.meta.url));

function verbs(): string[] {
  return readdirSync(join(here, 'commands'))
    .filter((f) => f.endsWith(ext) && !f.endsWith('.d.ts') && !f.startsWith('_'))
    .map((f) => f.slice(0, -ext.length))
    .sort();
}

async function load(verb: string): Promise<Command | undefined> {
  const name = ALIASES[verb] ?? verb;
  if (!/^[a-z][a-z0-9-]*$/.test(name) || !verbs().includes(name)) return undefined;
  return (await import(join(here, 'commands', name + ext))) as Command;
}

async function usage(): Promise<string> {
  const lines = ['usage: typevisor <command> [options]', '', 'commands:'];
  for (const v of verbs()) {
    const mod = (await import(join(here, 'commands', v + ext))) as Command;
    lines.push(`  ${v.padEnd(10)} ${mod.summary}`);
  }
  lines.push('', "Run 'typevisor <command> --help' for a command's options.");
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (!verb || verb === '--help' || verb === '-h' || verb === 'help') {
    console.log(await usage());
    return verb ? 0 : 0;
  }
  if (verb === '--version') {
    console.log('typevisor 0.1.0');
    return 0;
  }
  const cmd = await load(verb);
  if (!cmd) {
    console.error(`typevisor: unknown command '${verb}'\n\n${await usage()}`);
    return 2;
  }
  return cmd.run(rest);
}

const invokedDirectly = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(`typevisor: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
    },
  );
}
