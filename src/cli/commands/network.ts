import type { NetworkView } from '../../host/actions.js';
import { bytes, table } from '../format.js';
import { defineVerb, enc, printJson, UsageError } from '../verb.js';

export const summary = 'manage virtual networks: create, ls, info, rm';

/** The switch's and the NAT's live figures, from the network's stats (src/net NetworkStats). */
function counters(stats: Record<string, unknown> | null): string {
  if (!stats) return '-';
  const ports = Array.isArray(stats.ports) ? (stats.ports as { rxFrames?: number; rxBytes?: number; rxDropped?: number }[]) : [];
  const sum = (k: 'rxFrames' | 'rxBytes' | 'rxDropped') => ports.reduce((a, p) => a + (p[k] ?? 0), 0);
  const tcp = stats.tcpNat as { connections?: number } | undefined;
  const udp = stats.udpNat as { flows?: number } | undefined;
  const nat = tcp || udp ? `; NAT ${tcp?.connections ?? 0} TCP connections, ${udp?.flows ?? 0} UDP flows` : '';
  return `${ports.length} ports, ${sum('rxFrames')} frames (${bytes(sum('rxBytes'))}) switched, ${sum('rxDropped')} dropped${nat}`;
}

export const run = defineVerb({
  name: 'network',
  usage: `network create NAME [--subnet CIDR] [--mode nat|isolated] [--dns-host NAME=IP]...
       network ls | network info NAME | network rm NAME

nat networks (like the 'default' one, 10.0.2.0/24) give their VMs DHCP, DNS, NAT to the host's network and
published ports, with no root and no host setup: the gateway (.2) is this host's loopback as seen from a guest.
isolated networks only join their VMs to each other (DHCP and DNS for their names included).`,
  options: {
    subnet: { type: 'string' },
    mode: { type: 'string' },
    'dns-host': { type: 'string', multiple: true },
  },
  minArgs: 1,
  maxArgs: 2,
  async run({ values, positionals, client }) {
    const [sub, name] = positionals;
    const needName = () => {
      if (!name) throw new UsageError(`network ${sub} needs a NAME`);
      return name;
    };
    switch (sub) {
      case 'create': {
        const mode = values.mode ?? 'nat';
        if (mode !== 'nat' && mode !== 'isolated') throw new UsageError(`--mode is nat or isolated, got ${mode}`);
        const dnsHosts: Record<string, string> = {};
        for (const entry of values['dns-host'] ?? []) {
          const [host, ip, ...rest] = entry.split('=');
          if (!host || !ip || rest.length) throw new UsageError(`--dns-host takes NAME=IP, got ${entry}`);
          dnsHosts[host] = ip;
        }
        const body = {
          name: needName(),
          mode,
          ...(values.subnet ? { subnet: values.subnet } : {}),
          ...(values['dns-host'] ? { dnsHosts } : {}),
        };
        const net = await client.json<NetworkView>('POST', '/networks', body);
        if (values.json) printJson(net);
        else console.log(`created network ${net.name} (${net.mode}, ${net.subnet})`);
        return 0;
      }
      case 'ls':
      case 'list': {
        const { networks } = await client.json<{ networks: NetworkView[] }>('GET', '/networks');
        if (values.json) printJson(networks);
        else
          console.log(
            table(
              ['NAME', 'MODE', 'SUBNET', 'GATEWAY', 'VMS', 'STATE'],
              networks.map((n) => [
                n.name,
                n.mode,
                n.subnet,
                n.gateway ?? '-',
                String(n.vms.length),
                n.running ? 'running' : 'idle',
              ]),
            ),
          );
        return 0;
      }
      case 'info': {
        const n = await client.json<NetworkView>('GET', `/networks/${enc(needName())}`);
        if (values.json) {
          printJson(n);
          return 0;
        }
        const rows: [string, string][] = [
          ['name', n.name],
          ['mode', n.mode],
          ['subnet', n.subnet],
          ['gateway', n.gateway ?? '- (isolated)'],
          ['dns', n.dns],
          ['state', n.running ? 'running' : 'idle (starts with its first VM)'],
          ['vms', n.vms.join(', ') || '-'],
          ...Object.entries(n.dnsHosts).map(([h, ip]): [string, string] => [`dns ${h}`, ip]),
          ...n.leases.map((l): [string, string] => [`lease ${l.mac}`, `${l.ip}${l.hostname ? ` (${l.hostname})` : ''}`]),
          ['traffic', counters(n.stats)],
          ['created', n.createdAt],
        ];
        const w = Math.max(...rows.map((r) => r[0].length));
        for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
        return 0;
      }
      case 'rm':
      case 'delete': {
        const r = await client.json<{ deleted: string }>('DELETE', `/networks/${enc(needName())}`);
        if (values.json) printJson(r);
        else console.log(`deleted network ${r.deleted}`);
        return 0;
      }
      default:
        throw new UsageError(`unknown network command ${JSON.stringify(sub)} (create, ls, info, rm)`);
    }
  },
});
