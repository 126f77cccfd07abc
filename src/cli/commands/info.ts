import type { VmView } from '../../host/actions.js';
import { bytes, si } from '../format.js';
import { defineVerb, enc, printJson } from '../verb.js';
import { formatCpu } from '../format-cpu.js';

export const summary = "show a VM's configuration, state and live stats";

export const run = defineVerb({
  name: 'info',
  usage: 'info NAME [--json]',
  options: {},
  minArgs: 1,
  maxArgs: 1,
  async run({ values, positionals, client }) {
    const vm = await client.json<VmView>('GET', `/vms/${enc(positionals[0]!)}`);
    if (values.json) {
      printJson(vm);
      return 0;
    }
    const c = vm.config;
    const rows: [string, string][] = [
      ['name', vm.name],
      ['uuid', vm.uuid],
      ['state', vm.state + (vm.stateReason ? ` (${vm.stateReason})` : '')],
      ['autostart', vm.autostart ? 'yes' : 'no'],
      ['image', vm.image ?? '-'],
      ['vcpus', String(c.cpus)],
      ['cpu alloc', formatCpu(vm)],
      ['memory', `${c.memoryMiB} MiB`],
      ['firmware', c.firmware.kind === 'file' ? c.firmware.path : c.firmware.kind],
      ['kernel', c.kernel ?? '-'],
      ['initrd', c.initrd ?? '-'],
      ['cmdline', c.append ?? '-'],
      ...c.disks.map((d, i): [string, string] => [`disk${i}`, `${d.path} (${d.format}${d.readOnly ? ', read-only' : ''})`]),
      ...(c.nics ?? []).map((n, i): [string, string] => {
        const ip = vm.addresses.find((a) => a.nic === i)?.ip;
        const lim = (l: typeof n.rx) =>
          l?.bytesPerSecond ? `${bytes(l.bytesPerSecond)}/s` : l?.packetsPerSecond ? `${l.packetsPerSecond} pkt/s` : '';
        const rates = [n.rx ? `rx ≤ ${lim(n.rx)}` : '', n.tx ? `tx ≤ ${lim(n.tx)}` : ''].filter(Boolean).join(', ');
        return [`nic${i}`, `${n.network} ${n.mac} ${ip ?? '(no address yet)'}${rates ? ` [${rates}]` : ''}`];
      }),
      ...(c.publish ?? []).map((p): [string, string] => [
        'publish',
        `${p.hostIp}:${p.hostPort} → nic${p.nic}:${p.guestPort}/${p.proto}`,
      ]),
      ['created', vm.createdAt],
    ];
    const s = vm.stats;
    if (s) {
      rows.push(
        [
          'cpu',
          `${s.cpuPercent.toFixed(1)} % (steal ${s.stealPercent.toFixed(1)} %${s.capUsePercent === null ? '' : `, ${s.capUsePercent.toFixed(0)} % of cap`}), ${s.cpuTimeSeconds.toFixed(1)} s total, ${s.stealSeconds.toFixed(1)} s steal`,
        ],
        ['instructions', `${si(s.instret)} (${si(s.instructionsPerSecond)}/s)`],
        ['resident', bytes(s.residentBytes)],
        ['balloon', bytes(s.balloonBytes)],
        [
          'disk',
          `read ${bytes(s.diskReadBytes)} (${s.diskReadOps} ops), written ${bytes(s.diskWriteBytes)} (${s.diskWriteOps} ops)`,
        ],
        ['net', `rx ${bytes(s.netRxBytes)} (${s.netRxPackets} pkts), tx ${bytes(s.netTxBytes)} (${s.netTxPackets} pkts)`],
        ['uptime', `${s.uptimeSeconds} s`],
      );
    }
    const w = Math.max(...rows.map((r) => r[0].length));
    for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
    return 0;
  },
});
