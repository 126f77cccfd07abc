/**
 * The CLI's spelling of NICs, published ports and bandwidth limits, shared by `create` and `set`:
 *   --nic network=NAME[,mac=MAC][,rate=RATE][,burst=SIZE][,rx-rate=RATE][,tx-rate=RATE][,pps=N]
 *   --publish [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]
 *   --nic-rate [NIC:]RATE[,burst=SIZE] | [NIC:]rx=RATE,tx=RATE | [NIC:]none
 * RATE is bytes per second with a binary suffix (512K, 2M, 1G) or bits in the tc/libvirt style (100mbit).
 */
import type { NicSpec, PublishSpec } from '../host/actions.js';
import type { NicRateLimit } from '../vm/config.js';
import { UsageError } from './verb.js';

const BYTE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
const BIT_UNITS: Record<string, number> = { bit: 1 / 8, kbit: 1e3 / 8, mbit: 1e6 / 8, gbit: 1e9 / 8 };

/** '2M' → 2097152 bytes per second; '100mbit' → 12500000. */
export function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([a-z]*)(?:\/s)?$/i.exec(text.trim());
  const unit = m?.[2]?.toLowerCase() ?? '';
  const factor = BYTE_UNITS[unit.replace(/i?b$/, '')] ?? BIT_UNITS[unit];
  const value = m ? Number(m[1]) * (factor ?? NaN) : NaN;
  if (!Number.isFinite(value) || value <= 0)
    throw new UsageError(`rate ${JSON.stringify(text)} must be a positive size per second like 512K, 2M, 1G or 100mbit`);
  return Math.round(value);
}

/** '64K' → 65536 bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+)([kmg]?)(?:i?b)?$/i.exec(text.trim());
  if (!m || Number(m[1]) <= 0) throw new UsageError(`size ${JSON.stringify(text)} must be a positive size like 64K or 1M`);
  return Number(m[1]) * BYTE_UNITS[m[2]!.toLowerCase()]!;
}

function keyValues(text: string, what: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`${what}: expected key=value, got ${JSON.stringify(part)}`);
    const key = part.slice(0, eq);
    if (out.has(key)) throw new UsageError(`${what}: ${key} given twice`);
    out.set(key, part.slice(eq + 1));
  }
  return out;
}

function limit(rate: string | undefined, burst: string | undefined, pps: string | undefined): NicRateLimit | undefined {
  if (rate === undefined && pps === undefined) {
    if (burst !== undefined) throw new UsageError('burst= needs a rate');
    return undefined;
  }
  const out: NicRateLimit = {};
  if (rate !== undefined) out.bytesPerSecond = parseRate(rate);
  if (burst !== undefined) out.burstBytes = parseSize(burst);
  if (pps !== undefined) {
    const n = Number(pps);
    if (!Number.isInteger(n) || n <= 0) throw new UsageError(`pps=${pps} must be a positive whole number of packets per second`);
    out.packetsPerSecond = n;
  }
  return out;
}

export function parseNic(text: string): NicSpec {
  const kv = keyValues(text, '--nic');
  const known = ['network', 'mac', 'rate', 'burst', 'rx-rate', 'tx-rate', 'pps'];
  for (const k of kv.keys())
    if (!known.includes(k)) throw new UsageError(`--nic: unknown key '${k}' (one of ${known.join(', ')})`);
  const network = kv.get('network');
  if (!network) throw new UsageError('--nic needs network=NAME');
  const both = limit(kv.get('rate'), kv.get('burst'), kv.get('pps'));
  const rx = kv.has('rx-rate') ? limit(kv.get('rx-rate'), kv.get('burst'), kv.get('pps')) : both;
  const tx = kv.has('tx-rate') ? limit(kv.get('tx-rate'), kv.get('burst'), kv.get('pps')) : both;
  return { network, ...(kv.has('mac') ? { mac: kv.get('mac')! } : {}), ...(rx ? { rx } : {}), ...(tx ? { tx } : {}) };
}

export function parsePublish(text: string): PublishSpec {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/.exec(text);
  if (!m) throw new UsageError(`--publish takes [HOSTIP:]HOSTPORT:GUESTPORT[/udp], e.g. 8080:80, got ${JSON.stringify(text)}`);
  const hostPort = Number(m[2]);
  const guestPort = Number(m[3]);
  for (const p of [hostPort, guestPort]) if (p < 1 || p > 65535) throw new UsageError(`--publish ${text}: ports are 1 to 65535`);
  return { proto: (m[4] as 'tcp' | 'udp' | undefined) ?? 'tcp', ...(m[1] ? { hostIp: m[1] } : {}), hostPort, guestPort };
}

/** A live limit change: null removes a direction's limit, absent leaves it as it is. */
export interface NicRateChange {
  nic: number;
  rx?: NicRateLimit | null;
  tx?: NicRateLimit | null;
}

export function parseNicRate(text: string): NicRateChange {
  const m = /^(?:(\d):)?(.+)$/.exec(text)!;
  const nic = Number(m[1] ?? 0);
  const body = m[2]!;
  if (body === 'none') return { nic, rx: null, tx: null };
  if (!body.includes('=') || /^[^=]*,burst=/.test(body)) {
    const [rate, ...rest] = body.split(',');
    const kv = rest.length ? keyValues(rest.join(','), '--nic-rate') : new Map<string, string>();
    for (const k of kv.keys()) if (k !== 'burst') throw new UsageError(`--nic-rate: unknown key '${k}'`);
    const l = limit(rate, kv.get('burst'), undefined)!;
    return { nic, rx: l, tx: l };
  }
  const kv = keyValues(body, '--nic-rate');
  for (const k of kv.keys())
    if (!['rx', 'tx', 'burst'].includes(k)) throw new UsageError(`--nic-rate: unknown key '${k}' (rx, tx, burst)`);
  const dir = (v: string | undefined) =>
    v === undefined ? undefined : v === 'none' ? null : limit(v, kv.get('burst'), undefined)!;
  const rx = dir(kv.get('rx'));
  const tx = dir(kv.get('tx'));
  return { nic, ...(rx !== undefined ? { rx } : {}), ...(tx !== undefined ? { tx } : {}) };
}
