/** Prometheus text exposition (format 0.0.4) of host and per-VM figures. */
import type { HostInfo, VmView } from '../host/actions.js';
import type { VmStats } from '../host/engine.js';
import { VM_STATES } from '../host/lifecycle.js';

function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

type Kind = 'gauge' | 'counter';
type NumericStat = { [K in keyof VmStats]: VmStats[K] extends number ? K : never }[keyof VmStats];
const VM_METRICS: [NumericStat, string, Kind, string][] = [
  ['cpuPercent', 'typevisor_vm_cpu_percent', 'gauge', 'Share of one host core used by the VM thread'],
  ['instret', 'typevisor_vm_instructions_total', 'counter', 'Instructions retired since start'],
  ['instructionsPerSecond', 'typevisor_vm_instructions_per_second', 'gauge', 'Instructions retired per second'],
  ['residentBytes', 'typevisor_vm_resident_bytes', 'gauge', 'Host memory holding guest RAM'],
  ['memoryBytes', 'typevisor_vm_memory_bytes', 'gauge', 'Guest RAM size'],
  ['balloonBytes', 'typevisor_vm_balloon_bytes', 'gauge', 'Memory held by the balloon'],
  ['diskReadBytes', 'typevisor_vm_disk_read_bytes_total', 'counter', 'Bytes read from disks'],
  ['diskWriteBytes', 'typevisor_vm_disk_write_bytes_total', 'counter', 'Bytes written to disks'],
  ['diskReadOps', 'typevisor_vm_disk_read_ops_total', 'counter', 'Disk read requests'],
  ['diskWriteOps', 'typevisor_vm_disk_write_ops_total', 'counter', 'Disk write requests'],
  ['netRxBytes', 'typevisor_vm_net_rx_bytes_total', 'counter', 'Bytes received'],
  ['netTxBytes', 'typevisor_vm_net_tx_bytes_total', 'counter', 'Bytes sent'],
  ['netRxPackets', 'typevisor_vm_net_rx_packets_total', 'counter', 'Packets received'],
  ['netTxPackets', 'typevisor_vm_net_tx_packets_total', 'counter', 'Packets sent'],
  ['uptimeSeconds', 'typevisor_vm_uptime_seconds', 'gauge', 'Seconds since the VM started'],
];

export function prometheusText(host: HostInfo, vms: VmView[]): string {
  const lines: string[] = [];
  const metric = (name: string, kind: Kind, help: string, samples: [string, number][]): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${kind}`);
    for (const [labels, v] of samples) lines.push(`${name}${labels} ${Number.isFinite(v) ? v : 0}`);
  };
  metric('typevisor_host_cpus', 'gauge', 'Host logical CPUs', [['', host.cpus]]);
  metric('typevisor_host_memory_bytes', 'gauge', 'Host memory', [['', host.memoryBytes]]);
  metric('typevisor_host_free_memory_bytes', 'gauge', 'Host free memory', [['', host.freeMemoryBytes]]);
  metric('typevisor_daemon_rss_bytes', 'gauge', 'Daemon process resident memory (all VM threads included)', [
    ['', host.daemon.rssBytes],
  ]);
  metric(
    'typevisor_vms',
    'gauge',
    'VMs by state',
    VM_STATES.map((s) => [`{state="${s}"}`, host.vms.byState[s] ?? 0]),
  );
  metric(
    'typevisor_vm_state',
    'gauge',
    'Current state of each VM (1 for its state)',
    vms.map((v) => [`{vm="${label(v.name)}",state="${v.state}"}`, 1]),
  );
  metric(
    'typevisor_vm_vcpus',
    'gauge',
    'Configured vCPUs',
    vms.map((v) => [`{vm="${label(v.name)}"}`, v.config.cpus]),
  );
  const live = vms.filter((v) => v.stats !== null);
  for (const [key, name, kind, help] of VM_METRICS) {
    metric(
      name,
      kind,
      help,
      live.map((v) => [`{vm="${label(v.name)}"}`, v.stats![key]]),
    );
  }
  const NIC_METRICS = [
    ['rxBytes', 'typevisor_nic_rx_bytes_total', 'Bytes delivered to the guest by the NIC'],
    ['rxPackets', 'typevisor_nic_rx_packets_total', 'Frames delivered to the guest by the NIC'],
    ['rxDropped', 'typevisor_nic_rx_dropped_total', 'Frames for the guest dropped (no buffers, queue full)'],
    ['txBytes', 'typevisor_nic_tx_bytes_total', 'Bytes the guest sent through the NIC'],
    ['txPackets', 'typevisor_nic_tx_packets_total', 'Frames the guest sent through the NIC'],
    ['txDropped', 'typevisor_nic_tx_dropped_total', 'Frames from the guest dropped (malformed)'],
  ] as const;
  for (const [key, name, help] of NIC_METRICS) {
    metric(
      name,
      'counter',
      help,
      live.flatMap((v) =>
        v.stats!.nics.map((n, i): [string, number] => [`{vm="${label(v.name)}",nic="${i}",mac="${n.mac}"}`, n[key]]),
      ),
    );
  }
  return lines.join('\n') + '\n';
}
