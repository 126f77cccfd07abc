/** One line describing a VM's CPU allocation and the mechanism enforcing it. */
import type { VmView } from '../host/actions.js';
import { formatCpuList } from '../host/cpu/settings.js';

export function formatCpu(vm: VmView): string {
  const c = vm.cpu;
  const parts = [
    `weight ${c.weight}`,
    c.capPercent === null ? 'no cap' : `cap ${c.capPercent}%`,
    `cpuset ${c.cpuset ? formatCpuList(c.cpuset) : 'all'}`,
  ];
  if (c.burst) parts.push(`burst ${c.burst.capPercent}%:${c.burst.seconds}s${c.bursting ? ' (bursting now)' : ''}`);
  const online = vm.stats?.vcpusOnline;
  parts.push(
    online !== undefined && online > 0 && vm.state === 'running'
      ? `${online}/${vm.config.cpus} vCPUs online`
      : `${vm.config.cpus} vCPU`,
  );
  return `${parts.join(', ')} [${c.mechanism}]`;
}
