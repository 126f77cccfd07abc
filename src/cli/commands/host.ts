import type { HostInfo } from '../../host/actions.js';
import { bytes } from '../format.js';
import { defineVerb, printJson } from '../verb.js';

export const summary = "show the daemon host's cores, memory, VMs and usage";

export const run = defineVerb({
  name: 'host',
  usage: 'host [--json]',
  options: {},
  maxArgs: 0,
  async run({ values, client }) {
    const h = await client.json<HostInfo>('GET', '/host');
    if (values.json) {
      printJson(h);
      return 0;
    }
    const states = Object.entries(h.vms.byState)
      .filter(([, n]) => n > 0)
      .map(([s, n]) => `${n} ${s}`)
      .join(', ');
    console.log(
      `host      ${h.hostname}: ${h.cpus} cpus (${h.cpuModel}), ${bytes(h.memoryBytes)} memory, ${bytes(h.freeMemoryBytes)} free`,
    );
    console.log(
      `daemon    pid ${h.daemon.pid}, up ${h.daemon.uptimeSeconds} s, rss ${bytes(h.daemon.rssBytes)}, engine ${h.daemon.engine}`,
    );
    console.log(`cpu ctl   ${h.cpuControl.mechanism} (${h.cpuControl.detail})`);
    console.log(`vms       ${h.vms.total}${states ? ` (${states})` : ''}`);
    console.log(
      `usage     ${h.usage.vcpus} vcpus, ${bytes(h.usage.memoryBytes)} configured, ${bytes(h.usage.residentBytes)} resident, ${h.usage.cpuPercent} % cpu`,
    );
    return 0;
  },
});
