import type { VmView } from '../../host/actions.js';
import { table } from '../format.js';
import { defineVerb, printJson } from '../verb.js';

export const summary = 'list VMs (alias: ls)';

export const run = defineVerb({
  name: 'list',
  usage: 'ls [--json]',
  options: {},
  maxArgs: 0,
  async run({ values, client }) {
    const { vms } = await client.json<{ vms: VmView[] }>('GET', '/vms');
    if (values.json) {
      printJson(vms);
      return 0;
    }
    if (vms.length === 0) {
      console.log('no VMs');
      return 0;
    }
    console.log(
      table(
        ['NAME', 'STATE', 'VCPUS', 'MEMORY', 'IMAGE', 'AUTOSTART'],
        vms.map((v) => [
          v.name,
          v.state,
          String(v.config.cpus),
          `${v.config.memoryMiB} MiB`,
          v.image ?? '-',
          v.autostart ? 'yes' : 'no',
        ]),
      ),
    );
    return 0;
  },
});
