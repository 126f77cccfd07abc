/**
 * Virtual networks the daemon owns: $HOME/networks/<name>.json, one record each, replaced atomically. The
 * `default` NAT network always exists (10.0.2.0/24 as QEMU's user networking, unless the daemon is told
 * otherwise) and cannot be removed. What runs a network (its switch and gateway) is network-manager.ts.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from './atomic.js';
import { HostError } from './errors.js';
import { VM_NAME_RE } from './home.js';

export const NETWORK_SCHEMA = 1;
export const DEFAULT_NETWORK = 'default';
export const DEFAULT_SUBNET = '10.0.2.0/24';
export const NETWORK_MODES = ['nat', 'isolated'] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];

export interface NetworkRecord {
  schema: typeof NETWORK_SCHEMA;
  name: string;
  mode: NetworkMode;
  /** 'a.b.c.d/n', the network address with its prefix. */
  subnet: string;
  /** Extra names the network's DNS answers (name → IPv4). */
  dnsHosts: Record<string, string>;
  createdAt: string;
}

export interface Cidr {
  /** Network address as an unsigned 32-bit number. */
  network: number;
  prefix: number;
}

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function parseIpv4(text: string): number | undefined {
  if (!IPV4_RE.test(text)) return undefined;
  return text.split('.').reduce((acc, part) => ((acc << 8) | Number(part)) >>> 0, 0);
}

export function formatIpv4(ip: number): string {
  return [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].join('.');
}

/**
 * A subnet a network may use: /8 to /29 (room for gateway, DNS and guests), given by its network address (no
 * host bits set), and inside the private ranges so a guest address can never shadow a public host.
 */
export function parseSubnet(text: string): Cidr {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  const ip = m ? parseIpv4(m[1]!) : undefined;
  if (!m || ip === undefined)
    throw new HostError('INVALID_CONFIG', `subnet ${JSON.stringify(text)} is not an IPv4 CIDR like 10.0.3.0/24`);
  const prefix = Number(m[2]);
  if (prefix < 8 || prefix > 29) throw new HostError('INVALID_CONFIG', `subnet ${text}: the prefix must be from /8 to /29`);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  if ((ip & mask) >>> 0 !== ip)
    throw new HostError(
      'INVALID_CONFIG',
      `subnet ${text} has host bits set; the network address is ${formatIpv4((ip & mask) >>> 0)}/${prefix}`,
    );
  const inside = (base: string, bits: number) => {
    const b = parseIpv4(base)!;
    const bm = (0xffffffff << (32 - bits)) >>> 0;
    return prefix >= bits && (ip & bm) >>> 0 === b;
  };
  if (!inside('10.0.0.0', 8) && !inside('172.16.0.0', 12) && !inside('192.168.0.0', 16))
    throw new HostError('INVALID_CONFIG', `subnet ${text} must lie inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16`);
  return { network: ip, prefix };
}

function overlaps(a: Cidr, b: Cidr): boolean {
  const prefix = Math.min(a.prefix, b.prefix);
  const mask = (0xffffffff << (32 - prefix)) >>> 0;
  return (a.network & mask) >>> 0 === (b.network & mask) >>> 0;
}

export interface NetworkSpec {
  name: string;
  mode: NetworkMode;
  subnet?: string;
  dnsHosts?: Record<string, string>;
}

export class NetworkRegistry {
  private readonly records = new Map<string, NetworkRecord>();

  constructor(
    private readonly dir: string,
    private readonly defaultSubnet = DEFAULT_SUBNET,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** Reads every record, skipping unreadable ones (logged), and makes sure `default` exists. */
  load(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (const f of readdirSync(this.dir)) {
      if (!f.endsWith('.json')) continue;
      const path = join(this.dir, f);
      try {
        const rec = parseNetworkRecord(JSON.parse(readFileSync(path, 'utf8')) as unknown);
        if (`${rec.name}.json` !== f) throw new Error(`its name is '${rec.name}'`);
        this.records.set(rec.name, rec);
      } catch (err) {
        this.log(`skipping network ${path}: ${(err as Error).message}`);
      }
    }
    const existing = this.records.get(DEFAULT_NETWORK);
    if (!existing || existing.subnet !== this.defaultSubnet) {
      parseSubnet(this.defaultSubnet);
      this.write({
        schema: NETWORK_SCHEMA,
        name: DEFAULT_NETWORK,
        mode: 'nat',
        subnet: this.defaultSubnet,
        dnsHosts: existing?.dnsHosts ?? {},
        createdAt: existing?.createdAt ?? new Date().toISOString(),
      });
    }
  }

  list(): NetworkRecord[] {
    return [...this.records.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): NetworkRecord {
    const rec = this.records.get(name);
    if (!rec) throw new HostError('NETWORK_NOT_FOUND', `no network named '${name}'`);
    return rec;
  }

  has(name: string): boolean {
    return this.records.has(name);
  }

  /** Validates everything first; a refused create writes nothing. */
  create(spec: NetworkSpec): NetworkRecord {
    if (!VM_NAME_RE.test(spec.name))
      throw new HostError('INVALID_NAME', `network name ${JSON.stringify(spec.name)} must match [a-z0-9][a-z0-9-]*`);
    if (this.records.has(spec.name)) throw new HostError('NETWORK_EXISTS', `a network named '${spec.name}' already exists`);
    const subnet = spec.subnet ?? this.freeSubnet();
    const cidr = parseSubnet(subnet);
    for (const other of this.records.values()) {
      if (overlaps(cidr, parseSubnet(other.subnet)))
        throw new HostError('INVALID_CONFIG', `subnet ${subnet} overlaps network '${other.name}' (${other.subnet})`);
    }
    const dnsHosts = spec.dnsHosts ?? {};
    for (const [host, ip] of Object.entries(dnsHosts)) {
      if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(host) || host.length > 253)
        throw new HostError('INVALID_CONFIG', `DNS name ${JSON.stringify(host)} is not a valid host name`);
      if (parseIpv4(ip) === undefined)
        throw new HostError('INVALID_CONFIG', `DNS entry ${host}: ${JSON.stringify(ip)} is not an IPv4 address`);
    }
    const rec: NetworkRecord = {
      schema: NETWORK_SCHEMA,
      name: spec.name,
      mode: spec.mode,
      subnet,
      dnsHosts,
      createdAt: new Date().toISOString(),
    };
    this.write(rec);
    return rec;
  }

  remove(name: string): void {
    if (name === DEFAULT_NETWORK) throw new HostError('INVALID_STATE', "the 'default' network cannot be removed");
    this.get(name);
    rmSync(join(this.dir, `${name}.json`), { force: true });
    this.records.delete(name);
  }

  private write(rec: NetworkRecord): void {
    writeJsonAtomic(join(this.dir, `${rec.name}.json`), rec);
    this.records.set(rec.name, rec);
  }

  /** The first 10.0.N.0/24 (N from 3) that overlaps no existing network. */
  private freeSubnet(): string {
    const taken = [...this.records.values()].map((r) => parseSubnet(r.subnet));
    for (let n = 3; n < 255; n++) {
      const candidate = `10.0.${n}.0/24`;
      const c = parseSubnet(candidate);
      if (!taken.some((t) => overlaps(t, c))) return candidate;
    }
    throw new HostError('INVALID_CONFIG', 'no free 10.0.N.0/24 subnet left; give --subnet');
  }
}

export function parseNetworkRecord(v: unknown): NetworkRecord {
  if (typeof v !== 'object' || v === null) throw new Error('not an object');
  const r = v as Partial<NetworkRecord>;
  if (r.schema !== NETWORK_SCHEMA) throw new Error(`unsupported schema ${String(r.schema)}`);
  if (typeof r.name !== 'string' || !VM_NAME_RE.test(r.name)) throw new Error('bad name');
  if (!NETWORK_MODES.includes(r.mode as NetworkMode)) throw new Error(`bad mode ${String(r.mode)}`);
  if (typeof r.subnet !== 'string') throw new Error('missing subnet');
  parseSubnet(r.subnet);
  const dnsHosts = typeof r.dnsHosts === 'object' && r.dnsHosts !== null ? r.dnsHosts : {};
  return { ...(r as NetworkRecord), dnsHosts };
}
