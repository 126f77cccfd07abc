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
    if (h.daemon.vmProcessUser) console.log(`vm user   ${h.daemon.vmProcessUser}`);
    const pool = h.daemon.warmPool;
    if (pool)
      console.log(
        `warm pool ${pool.idle} of ${pool.size} idle${pool.starting ? ', one starting' : ''}; ${pool.hits} starts took one, ${pool.misses} found none`,
      );
    const net = h.daemon.networkWarmPool;
    if (net)
      console.log(
        `net pool  ${net.idle} of ${net.size} idle${net.starting ? ', one starting' : ''}; ${net.hits} network starts took one, ${net.misses} found none`,
      );
    console.log(`cpu ctl   ${h.cpuControl.mechanism} (${h.cpuControl.detail})`);
    console.log(`vms       ${h.vms.total}${states ? ` (${states})` : ''}`);
    const m = h.memory;
    console.log(
      `memory    budget ${bytes(m.budgetBytes)} (overcommit ${m.overcommit}: maximums up to ${bytes(m.commitLimitBytes)}), ` +
        `committed ${bytes(m.committedBytes)}, floors ${bytes(m.floorsBytes)}, resident ${bytes(m.residentBytes)}, ` +
        `headroom ${bytes(m.headroomBytes)}, policy target ${bytes(m.policyTargetBytes)}`,
    );
    if (m.measuredOverheadPerVmBytes !== null) {
      const api = m.vms.length ? m.vms.reduce((a, v) => a + v.overheadBytes, 0) / m.vms.length : 0;
      console.log(
        `per VM    overhead ${bytes(m.measuredOverheadPerVmBytes)} measured (daemon RSS beyond the empty daemon and the guests' RAM), ` +
          `${bytes(api)} counted (decode caches + worker heap)`,
      );
    }
    for (const v of m.vms)
      console.log(
        `  ${v.name.padEnd(12)} max ${bytes(v.maxBytes)}, floor ${bytes(v.floorBytes)}, size ${v.sizeBytes === null ? '-' : bytes(v.sizeBytes)}, resident ${bytes(v.residentBytes)} (guest RAM ${bytes(v.guestRamBytes)}, overhead ${bytes(v.overheadBytes)})`,
      );
    console.log(
      `usage     ${h.usage.vcpus} vcpus, ${bytes(h.usage.memoryBytes)} configured, ${bytes(h.usage.residentBytes)} resident, ${h.usage.cpuPercent} % cpu`,
    );
    return 0;
  },
});
