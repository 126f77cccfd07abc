/**
 * The L2 learning switch of one virtual network. Every attached NIC (and the gateway, when there is one) is a
 * port. Frames to a learned unicast MAC go to that port; broadcast, multicast and unknown unicast flood to
 * every port but the ingress. The MAC table is bounded and entries age out, so a guest that cycles source MACs
 * cannot grow memory; a port attached with a fixed MAC may only send with that source MAC (libvirt's
 * clean-traffic), so a guest cannot steal another's traffic by spoofing its address.
 */
import { ETH_HEADER_LENGTH, ETH_MAX_FRAME, isMulticastMac, readMac, type Mac } from './packet/ethernet.js';

export interface PortCounters {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  /** Frames from this port that went nowhere: malformed, spoofed, or addressed back to their own port. */
  rxDropped: number;
  /** Of rxDropped: frames whose source MAC was not the port's fixed MAC, or was a multicast address. */
  spoofDropped: number;
}

export interface SwitchPortOptions {
  /** When set, frames from this port must carry this source MAC. */
  fixedMac?: Mac;
}

export interface SwitchOptions {
  /** MAC table capacity (default 1024). When full, new addresses are not learned and flood instead. */
  macTableSize?: number;
  /** How long a learned address stays without traffic (default 300 s, as the Linux bridge). */
  agingMs?: number;
  now: () => number;
}

export class SwitchPort {
  readonly counters: PortCounters = { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, rxDropped: 0, spoofDropped: 0 };
  attached = true;
  constructor(
    readonly id: string,
    readonly fixedMac: Mac | undefined,
    readonly deliver: (frame: Uint8Array, exclusive: boolean) => void,
  ) {}
}

interface MacEntry {
  port: SwitchPort;
  lastSeen: number;
}

export class L2Switch {
  private readonly ports: SwitchPort[] = [];
  private readonly table = new Map<Mac, MacEntry>();
  private readonly capacity: number;
  private readonly agingMs: number;
  private readonly now: () => number;
  /** Frames not learned because the table was full of live entries. */
  learnRefused = 0;

  constructor(opts: SwitchOptions) {
    this.capacity = opts.macTableSize ?? 1024;
    this.agingMs = opts.agingMs ?? 300_000;
    this.now = opts.now;
  }

  attach(id: string, deliver: (frame: Uint8Array, exclusive: boolean) => void, opts: SwitchPortOptions = {}): SwitchPort {
    if (this.ports.some((p) => p.id === id)) throw new Error(`switch port '${id}' is already attached`);
    const port = new SwitchPort(id, opts.fixedMac, deliver);
    this.ports.push(port);
    return port;
  }

  detach(port: SwitchPort): void {
    const i = this.ports.indexOf(port);
    if (i < 0) return;
    this.ports.splice(i, 1);
    port.attached = false;
    for (const [mac, entry] of this.table) if (entry.port === port) this.table.delete(mac);
  }

  portList(): readonly SwitchPort[] {
    return this.ports;
  }

  macTableSize(): number {
    return this.table.size;
  }

  /** A frame from `ingress`. Never throws on frame content. */
  receive(ingress: SwitchPort, frame: Uint8Array): void {
    if (!ingress.attached) return;
    const c = ingress.counters;
    c.rxFrames++;
    c.rxBytes += frame.length;
    if (frame.length < ETH_HEADER_LENGTH || frame.length > ETH_MAX_FRAME) {
      c.rxDropped++;
      return;
    }
    const src = readMac(frame, 6);
    if (isMulticastMac(src) || (ingress.fixedMac !== undefined && src !== ingress.fixedMac)) {
      c.rxDropped++;
      c.spoofDropped++;
      return;
    }
    const now = this.now();
    this.learn(src, ingress, now);
    const dst = readMac(frame, 0);
    if (!isMulticastMac(dst)) {
      const entry = this.table.get(dst);
      if (entry && now - entry.lastSeen <= this.agingMs) {
        if (entry.port === ingress) {
          c.rxDropped++;
          return;
        }
        this.send(entry.port, frame, true);
        return;
      }
    }
    let sent = false;
    for (const port of this.ports) {
      if (port === ingress) continue;
      this.send(port, frame, false);
      sent = true;
    }
    if (!sent) c.rxDropped++;
  }

  /** `exclusive`: this port is the frame's only recipient (a flooded frame is shared by every port). */
  private send(port: SwitchPort, frame: Uint8Array, exclusive: boolean): void {
    port.counters.txFrames++;
    port.counters.txBytes += frame.length;
    port.deliver(frame, exclusive);
  }

  private learn(mac: Mac, port: SwitchPort, now: number): void {
    const entry = this.table.get(mac);
    if (entry) {
      entry.port = port;
      entry.lastSeen = now;
      return;
    }
    if (this.table.size >= this.capacity && !this.evictOne(now)) {
      this.learnRefused++;
      return;
    }
    this.table.set(mac, { port, lastSeen: now });
  }

  /** Drops one aged entry, or the least recently refreshed fixed-MAC-less one, to make room. */
  private evictOne(now: number): boolean {
    let oldestMac: Mac | undefined;
    let oldestSeen = Infinity;
    for (const [mac, entry] of this.table) {
      if (now - entry.lastSeen > this.agingMs) {
        this.table.delete(mac);
        return true;
      }
      // Entries of fixed-MAC ports are never evicted by another port's churn.
      if (entry.port.fixedMac === mac) continue;
      if (entry.lastSeen < oldestSeen) {
        oldestSeen = entry.lastSeen;
        oldestMac = mac;
      }
    }
    if (oldestMac === undefined) return false;
    this.table.delete(oldestMac);
    return true;
  }

  /** Forgets aged entries; called periodically by the network. */
  sweep(): void {
    const now = this.now();
    for (const [mac, entry] of this.table) if (now - entry.lastSeen > this.agingMs) this.table.delete(mac);
  }
}
