import { defineVerb, enc, printJson } from '../verb.js';

export const summary = 'delete a stopped VM and its files (alias: rm; --force stops it first)';

export const run = defineVerb({
  name: 'delete',
  usage: 'rm NAME... [--force] [--json]',
  options: { force: { type: 'boolean', short: 'f' } },
  minArgs: 1,
  async run({ values, positionals, client }) {
    const out: unknown[] = [];
    for (const name of positionals) {
      out.push(await client.json('DELETE', `/vms/${enc(name)}${values.force ? '?force=true' : ''}`));
      if (!values.json) console.log(`deleted ${name}`);
    }
    if (values.json) printJson(positionals.length === 1 ? out[0] : out);
    return 0;
  },
});
