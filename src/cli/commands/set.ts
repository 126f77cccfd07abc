import type { VmView } from '../../host/actions.js';
import { formatCpu } from '../format-cpu.js';
import { settingParseOptions, settingsBody, settingsUsage } from '../settings-options.js';
import { defineVerb, enc, printJson, UsageError } from '../verb.js';

export const summary = "change a VM's settings (CPU, memory floor, weight and target, vCPUs), live when it runs";

export const run = defineVerb({
  name: 'set',
  usage: `set NAME [options]

Changes take effect at once on a running VM (or the VM refuses them and nothing changes).
${settingsUsage(false)}`,
  options: settingParseOptions(false),
  minArgs: 1,
  maxArgs: 1,
  async run({ values, positionals, client }) {
    const body = settingsBody(values, false);
    if (Object.keys(body).length === 0) throw new UsageError('nothing to set: give at least one option');
    const vm = await client.json<VmView>('PATCH', `/vms/${enc(positionals[0]!)}`, body);
    if (values.json) printJson(vm);
    else if (body.memory && !body.cpu)
      console.log(
        `${vm.name}: memory max ${vm.memory.maxMiB} MiB, min ${vm.memory.minMiB} MiB, weight ${vm.memory.weight}` +
          (vm.memory.sizeMiB === null ? '' : `, size ${vm.memory.sizeMiB} MiB`) +
          (vm.memory.targetMiB === null ? '' : ` (pinned)`),
      );
    else console.log(`${vm.name}: ${formatCpu(vm)}${vm.state === 'running' ? '' : ` (${vm.state}: from the next start)`}`);
    return 0;
  },
});
