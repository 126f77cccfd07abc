/**
 * /metrics with prom-client: the default process metrics, a histogram of API latency, and host and per-VM
 * figures refreshed from the host layer at each scrape.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { HostInfo, VmView } from '../host/actions.js';
import type { VmStats } from '../host/engine.js';
import { VM_STATES } from '../host/lifecycle.js';

type Kind = 'gauge' | 'counter';
// Every scalar figure (null guest figures are skipped at render time); the per-NIC list has its own metrics.
type NumericStat = Exclude<keyof VmStats, 'nics'>;
type NicStat = 'rxBytes' | 'rxPackets' | 'rxDropped' | 'txBytes' | 'txPackets' | 'txDropped';
const NIC_METRICS: [NicStat, string, string][] = [
  ['rxBytes', 'typevisor_nic_rx_bytes_total', 'Bytes delivered to the guest by the NIC'],
  ['rxPackets', 'typevisor_nic_rx_packets_total', 'Frames delivered to the guest by the NIC'],
  ['rxDropped', 'typevisor_nic_rx_dropped_total', 'Frames for the guest dropped (no buffers, queue full, malformed)'],
  ['txBytes', 'typevisor_nic_tx_bytes_total', 'Bytes the guest sent through the NIC'],
  ['txPackets', 'typevisor_nic_tx_packets_total', 'Frames the guest sent through the NIC'],
  ['txDropped', 'typevisor_nic_tx_dropped_total', 'Frames from the guest dropped (malformed)'],
];
const VM_METRICS: [NumericStat, string, Kind, string][] = [
  ['cpuPercent', 'typevisor_vm_cpu_percent', 'gauge', 'Percent of one host core the VM threads ran (kernel schedstat)'],
  ['stealPercent', 'typevisor_vm_steal_percent', 'gauge', 'Percent of the time the VM threads waited runnable'],
  ['cpuTimeSeconds', 'typevisor_vm_cpu_seconds_total', 'counter', 'CPU time of the VM threads since start'],
  ['stealSeconds', 'typevisor_vm_steal_seconds_total', 'counter', 'Runnable-but-waiting time since start'],
  ['vcpusOnline', 'typevisor_vm_vcpus_online', 'gauge', 'Harts the guest has running (SBI HSM)'],
  ['instret', 'typevisor_vm_instructions_total', 'counter', 'Instructions retired since start'],
  ['instructionsPerSecond', 'typevisor_vm_instructions_per_second', 'gauge', 'Instructions retired per second'],
  ['residentBytes', 'typevisor_vm_resident_bytes', 'gauge', 'Host memory the VM holds (guest RAM, decode caches, worker heap)'],
  ['guestRamBytes', 'typevisor_vm_guest_ram_bytes', 'gauge', 'Host memory holding guest RAM'],
  ['decodeCacheBytes', 'typevisor_vm_decode_cache_bytes', 'gauge', 'Decoded instruction pages'],
  ['workerHeapBytes', 'typevisor_vm_worker_heap_bytes', 'gauge', 'The VM worker isolate heap'],
  ['memoryBytes', 'typevisor_vm_memory_bytes', 'gauge', 'Guest RAM size'],
  ['balloonBytes', 'typevisor_vm_balloon_bytes', 'gauge', 'Memory held by the balloon'],
  ['balloonTargetBytes', 'typevisor_vm_balloon_target_bytes', 'gauge', 'Balloon size the host asks for'],
  ['guestAvailableBytes', 'typevisor_vm_guest_available_bytes', 'gauge', 'Guest MemAvailable (balloon stats)'],
  ['guestFreeBytes', 'typevisor_vm_guest_free_bytes', 'gauge', 'Guest MemFree (balloon stats)'],
  ['guestCachesBytes', 'typevisor_vm_guest_caches_bytes', 'gauge', 'Guest disk caches (balloon stats)'],
  ['guestTotalBytes', 'typevisor_vm_guest_total_bytes', 'gauge', 'Guest MemTotal (balloon stats)'],
  ['guestMajorFaults', 'typevisor_vm_guest_major_faults_total', 'counter', 'Guest major page faults'],
  ['guestMinorFaults', 'typevisor_vm_guest_minor_faults_total', 'counter', 'Guest minor page faults'],
  ['guestSwapInBytes', 'typevisor_vm_guest_swap_in_bytes_total', 'counter', 'Guest swap-in bytes'],
  ['guestSwapOutBytes', 'typevisor_vm_guest_swap_out_bytes_total', 'counter', 'Guest swap-out bytes'],
  ['guestOomKills', 'typevisor_vm_guest_oom_kills_total', 'counter', 'Guest OOM kills (Linux 6.12+ guests)'],
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

export class ApiMetrics {
  readonly registry = new Registry();
  readonly requestDuration: Histogram<'method' | 'route' | 'status_code'>;
  private readonly hostGauges: Record<
    'cpus' | 'memory' | 'free' | 'rss' | 'budget' | 'committed' | 'floors' | 'resident' | 'headroom',
    Gauge
  >;
  private readonly vmsByState: Gauge<'state'>;
  private readonly vmState: Gauge<'vm' | 'state'>;
  private readonly vcpus: Gauge<'vm'>;
  private readonly cpuWeight: Gauge<'vm'>;
  private readonly cpuCap: Gauge<'vm'>;
  private readonly perVm = new Map<NumericStat, Gauge<'vm'> | Counter<'vm'>>();
  private readonly perNic = new Map<NicStat, Counter<'vm' | 'nic' | 'mac'>>();

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'typevisor_daemon_' });
    this.requestDuration = new Histogram({
      name: 'typevisor_api_request_duration_seconds',
      help: 'API request latency',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    });
    const g = (name: string, help: string) => new Gauge({ name, help, registers });
    this.hostGauges = {
      cpus: g('typevisor_host_cpus', 'Host logical CPUs'),
      memory: g('typevisor_host_memory_bytes', 'Host memory'),
      free: g('typevisor_host_free_memory_bytes', 'Host free memory'),
      rss: g('typevisor_daemon_rss_bytes', 'Daemon process resident memory (all VM threads included)'),
      budget: g('typevisor_host_memory_budget_bytes', 'Memory budget for VMs (--memory-budget)'),
      committed: g('typevisor_host_memory_committed_bytes', "Running VMs' maximum memory"),
      floors: g('typevisor_host_memory_floors_bytes', "Running VMs' memory minimums"),
      resident: g('typevisor_host_memory_vm_resident_bytes', 'Guest RAM the running VMs hold'),
      headroom: g('typevisor_host_memory_headroom_bytes', 'Budget minus resident'),
    };
    this.vmsByState = new Gauge({ name: 'typevisor_vms', help: 'VMs by state', labelNames: ['state'], registers });
    this.vmState = new Gauge({
      name: 'typevisor_vm_state',
      help: 'Current state of each VM (1 for its state)',
      labelNames: ['vm', 'state'],
      registers,
    });
    this.vcpus = new Gauge({ name: 'typevisor_vm_vcpus', help: 'Configured vCPUs', labelNames: ['vm'], registers });
    this.cpuWeight = new Gauge({ name: 'typevisor_vm_cpu_weight', help: 'CPU weight', labelNames: ['vm'], registers });
    this.cpuCap = new Gauge({
      name: 'typevisor_vm_cpu_cap_percent',
      help: 'CPU cap in force (burst included); absent when uncapped',
      labelNames: ['vm'],
      registers,
    });
    for (const [key, name, kind, help] of VM_METRICS) {
      const opts = { name, help, labelNames: ['vm'] as const, registers };
      this.perVm.set(key, kind === 'counter' ? new Counter(opts) : new Gauge(opts));
    }
    for (const [key, name, help] of NIC_METRICS)
      this.perNic.set(key, new Counter({ name, help, labelNames: ['vm', 'nic', 'mac'] as const, registers }));
  }

  /** Refreshes the host and VM figures, then renders every metric. */
  async render(host: HostInfo, vms: VmView[]): Promise<string> {
    this.hostGauges.cpus.set(host.cpus);
    this.hostGauges.memory.set(host.memoryBytes);
    this.hostGauges.free.set(host.freeMemoryBytes);
    this.hostGauges.rss.set(host.daemon.rssBytes);
    this.hostGauges.budget.set(host.memory.budgetBytes);
    this.hostGauges.committed.set(host.memory.committedBytes);
    this.hostGauges.floors.set(host.memory.floorsBytes);
    this.hostGauges.resident.set(host.memory.residentBytes);
    this.hostGauges.headroom.set(host.memory.headroomBytes);
    for (const s of VM_STATES) this.vmsByState.set({ state: s }, host.vms.byState[s] ?? 0);
    // VMs come and go: start every per-VM series afresh so deleted VMs disappear.
    for (const m of [this.vmState, this.vcpus, this.cpuWeight, this.cpuCap, ...this.perVm.values(), ...this.perNic.values()])
      m.reset();
    for (const v of vms) {
      this.vmState.set({ vm: v.name, state: v.state }, 1);
      this.vcpus.set({ vm: v.name }, v.config.cpus);
      this.cpuWeight.set({ vm: v.name }, v.cpu.weight);
      if (v.cpu.effectiveCapPercent !== null) this.cpuCap.set({ vm: v.name }, v.cpu.effectiveCapPercent);
      if (!v.stats) continue;
      for (const [key, metric] of this.perVm) {
        const raw = v.stats[key];
        if (raw === null) continue; // the guest does not report it
        const value = Number(raw);
        if (!Number.isFinite(value)) continue;
        if (metric instanceof Counter) metric.inc({ vm: v.name }, Math.max(0, value));
        else metric.set({ vm: v.name }, value);
      }
      for (const [i, nic] of (v.stats.nics ?? []).entries())
        for (const [key, metric] of this.perNic) metric.inc({ vm: v.name, nic: String(i), mac: nic.mac }, Math.max(0, nic[key]));
    }
    return this.registry.metrics();
  }
}
