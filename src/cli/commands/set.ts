import type { VmView } from '../../host/actions.js';
import { parseNicRate } from '../net-options.js';
import { defineVerb, enc, printJson, UsageError } from '../verb.js';

export const summary = "change a VM's settings (live where the VM is running)";

export const run = defineVerb({
  name: 'set',
  usage: `set NAME [--nic-rate [NIC:]RATE[,burst=SIZE] | [NIC:]rx=RATE,tx=RATE | [NIC:]none]...

--nic-rate changes a NIC's bandwidth limit (both directions, or rx/tx apart; 'none' removes it), at once on a
running VM and in its record. NIC is the index (default 0). RATE: 512K, 2M, 1G (bytes/s) or 100mbit.`,
  options: {
    'nic-rate': { type: 'string', multiple: true },
  },
  minArgs: 1,
  maxArgs: 1,
  async run({ values, positionals, client }) {
    const patch: Record<string, unknown> = {};
    if (values['nic-rate']) patch.nicRates = values['nic-rate'].map(parseNicRate);
    if (Object.keys(patch).length === 0) throw new UsageError('nothing to change: give at least one setting');
    const vm = await client.json<VmView>('PATCH', `/vms/${enc(positionals[0]!)}`, patch);
    if (values.json) printJson(vm);
    else console.log(`updated ${vm.name}`);
    return 0;
  },
});
