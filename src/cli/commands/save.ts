import { resolve } from 'node:path';
import type { StateOutcome } from '../../host/actions.js';
import { defineVerb, enc, printJson } from '../verb.js';

export const summary = 'save a running VM (memory, devices, disks) into a new directory';
export const run = defineVerb({
  name: 'save',
  usage: `save NAME DIR [--stop] [--json]

Writes the VM's machine state (machine.tvstate), a copy of each disk and manifest.json into DIR, which must
not exist yet. The VM pauses while it is saved and then runs on (--stop: it is stopped instead).
Bring it back with 'typevisor restore DIR [--name NEW]'.`,
  options: { stop: { type: 'boolean' } },
  minArgs: 2,
  maxArgs: 2,
  async run({ values, positionals, client }) {
    const [name, dir] = positionals as [string, string];
    const out = await client.json<StateOutcome>('POST', `/vms/${enc(name)}/save`, { path: resolve(dir), stop: !!values.stop });
    if (values.json) printJson(out);
    else
      console.log(
        `${name}: saved to ${out.path} (${(out.stateBytes / 2 ** 20).toFixed(1)} MiB state, ${out.ramChunks} RAM chunks, ${out.workerMs.toFixed(0)} ms paused); now ${out.vm.state}`,
      );
    return 0;
  },
});
