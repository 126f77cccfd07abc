import { resolve } from 'node:path';
import type { StateOutcome } from '../../host/actions.js';
import { defineVerb, printJson } from '../verb.js';

export const summary = "create a VM from a 'typevisor save' directory and run it from the saved state";
export const run = defineVerb({
  name: 'restore',
  usage: `restore DIR [--name NEW] [--json]

Creates a VM (named as when saved, or NEW) with copies of the saved disks and resumes it exactly where it was
saved. RAM is read from DIR/machine.tvstate as the guest touches it.`,
  options: { name: { type: 'string' } },
  minArgs: 1,
  maxArgs: 1,
  async run({ values, positionals, client }) {
    const out = await client.json<StateOutcome>('POST', '/restore', {
      path: resolve(positionals[0]!),
      ...(values.name !== undefined ? { name: values.name } : {}),
    });
    if (values.json) printJson(out);
    else console.log(`${out.vm.name}: restored from ${out.path} in ${out.workerMs.toFixed(0)} ms; now ${out.vm.state}`);
    return 0;
  },
});
