import type { VmView } from '../../host/actions.js';
import { defineVerb, enc, printJson } from '../verb.js';

export const summary = 'make a linked clone of a VM (thin overlays over its disks; --running: resumes its memory)';
export const run = defineVerb({
  name: 'clone',
  usage: `clone SRC DST [--running] [--json]

DST gets thin qcow2 overlays over SRC's disks as they are now (SRC keeps running on its own new overlays), and
a new identity: new MACs, and inside the guest (agent) a new machine id, entropy seed and hostname. With
--running (SRC running or paused) DST resumes from SRC's memory at once; otherwise it is created stopped.`,
  options: { running: { type: 'boolean' } },
  minArgs: 2,
  maxArgs: 2,
  async run({ values, positionals, client }) {
    const [src, dst] = positionals as [string, string];
    const out = await client.json<{ vm: VmView; totalMs: number }>('POST', `/vms/${enc(src)}/clone`, {
      name: dst,
      running: !!values.running,
    });
    if (values.json) printJson(out);
    else console.log(`${dst}: cloned from ${src} in ${out.totalMs.toFixed(0)} ms; now ${out.vm.state}`);
    return 0;
  },
});
