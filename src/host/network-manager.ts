/**
 * Runs the daemon's virtual networks while VMs use them. Each network (its switch, and for `nat` networks the
 * user-mode gateway) runs in a worker of its own (src/net/network-host.ts); a VM's NIC is one MessagePort between
 * that worker and the VM's worker, so frames never pass through the daemon's event loop. A network starts with
 * its first attached NIC and stops after its last one leaves.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { HostError } from './errors.js';
import type { NetworkRecord, NetworkRegistry } from './networks.js';
import type { NicConfig, PublishedPort, VmConfig } from '../vm/config.js';

export interface ForwardSpec {
  proto: 'tcp' | 'udp';
  hostIp: string;
  hostPort: number;
  guestMac: string;
  guestPort: number;
}

export interface NetworkLease {
  mac: string;
  ip: string;
  hostname?: string;
}

/** One running network, as src/net/network-host.ts provides it. */
export interface RunningNetwork {
  /**
   * Plugs a NIC in over `port`, the network's end of the NIC's channel (transferred; frames in batches). The VM
   * holds the other end and may send before this resolves: its frames wait in the channel.
   */
  attachNic(nic: { nicId: string; mac: string; hostname: string }, port: MessagePort): Promise<void>;
  detachNic(nicId: string): Promise<void>;
  /** Rejects with an Error whose `code` says why the host port cannot be bound ('AddressInUse', ...). */
  addForward(forward: ForwardSpec): Promise<void>;
  removeForward(forward: ForwardSpec): Promise<void>;
  leases(): Promise<NetworkLease[]>;
  stats(): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export interface NetworkStartSpec {
  record: NetworkRecord;
  /** Addresses handed out before (mac → ip), so a VM keeps its address across restarts of the daemon. */
  leases: Record<string, string>;
  onLease(lease: NetworkLease): void;
}

export type StartNetwork = (spec: NetworkStartSpec) => Promise<RunningNetwork>;

interface Running {
  network: RunningNetwork;
  nics: Set<string>;
}

/** What a started VM holds on its networks; `release` undoes all of it. */
export interface VmNetworkLink {
  /** The VM's end of each NIC's channel, in config order: usable at once (see `ready`). */
  ports: MessagePort[];
  /**
   * Settles once the networks have started, every NIC is plugged in and every published port bound. It rejects
   * (with a HostError, everything undone) when one cannot be. Until it settles, the VM's frames wait in the
   * channels: a VM can start (restore) meanwhile instead of waiting for a network's worker to start.
   */
  ready: Promise<void>;
  release(): Promise<void>;
}

export interface NetworkManagerOptions {
  registry: NetworkRegistry;
  start: StartNetwork;
  /** Leases recorded in VM records for this network (mac → ip). */
  knownLeases(network: string): Record<string, string>;
  onLease(network: string, lease: NetworkLease): void;
  log?: (line: string) => void;
}

export class NetworkManager {
  /** Networks starting or running, by name; a start in progress is shared by concurrent VM starts. */
  private readonly running = new Map<string, Promise<Running>>();
  /** Serialises attach/detach per network so a stop never races a start. */
  private chain: Promise<unknown> = Promise.resolve();
  private readonly log: (line: string) => void;

  constructor(private readonly opts: NetworkManagerOptions) {
    this.log = opts.log ?? (() => {});
  }

  /**
   * Attaches every NIC of a VM and binds its published ports, all or nothing. The VM's ends of the NICs'
   * channels are handed out at once; the work happens in the background, in order with other VMs' (`ready`).
   */
  connectVm(vmName: string, config: VmConfig): VmNetworkLink {
    const nics = config.nics ?? [];
    const channels = nics.map(() => new MessageChannel());
    const attached: { net: string; nicId: string }[] = [];
    const forwards: { net: string; spec: ForwardSpec }[] = [];
    const undo = async () => {
      for (const f of forwards.splice(0)) await (await this.get(f.net))?.network.removeForward(f.spec).catch(() => {});
      for (const a of attached.splice(0)) await this.detach(a.net, a.nicId);
    };
    const ready = this.serial(async () => {
      try {
        for (const [i, nic] of nics.entries()) {
          const run = await this.ensure(nic.network);
          const nicId = `${vmName}#${i}`;
          try {
            await run.network.attachNic({ nicId, mac: nic.mac, hostname: vmName }, channels[i]!.port2);
          } catch (err) {
            throw new HostError(
              'INVALID_CONFIG',
              `NIC ${i} (${nic.mac}) cannot join network '${nic.network}': ${(err as Error).message}`,
            );
          }
          run.nics.add(nicId);
          attached.push({ net: nic.network, nicId });
        }
        for (const p of config.publish ?? []) {
          const nic = nics[p.nic];
          if (!nic)
            throw new HostError('INVALID_CONFIG', `published port ${p.hostPort} names NIC ${p.nic}, which does not exist`);
          const spec = forwardSpec(p, nic);
          const run = await this.ensure(nic.network);
          try {
            await run.network.addForward(spec);
          } catch (err) {
            throw forwardError(p, err);
          }
          forwards.push({ net: nic.network, spec });
        }
      } catch (err) {
        for (const c of channels) {
          c.port1.close();
          c.port2.close();
        }
        await undo();
        throw err;
      }
    });
    // A start that never waits for it (it failed first) must not leave an unhandled rejection behind.
    ready.catch(() => {});
    let released = false;
    return {
      ports: channels.map((c) => c.port1),
      ready,
      release: () =>
        this.serial(async () => {
          if (released) return;
          released = true;
          await undo();
        }),
    };
  }

  /** The live figures of a network, or null when it is not running. */
  async stats(name: string): Promise<Record<string, unknown> | null> {
    const run = await this.get(name);
    return run ? run.network.stats() : null;
  }

  async leases(name: string): Promise<NetworkLease[]> {
    const run = await this.get(name);
    return run ? run.network.leases() : [];
  }

  isRunning(name: string): boolean {
    return this.running.has(name);
  }

  async close(): Promise<void> {
    const all = [...this.running.values()];
    this.running.clear();
    await Promise.allSettled(all.map(async (p) => (await p).network.close()));
  }

  private async get(name: string): Promise<Running | undefined> {
    const p = this.running.get(name);
    return p ? p.catch(() => undefined) : undefined;
  }

  private ensure(name: string): Promise<Running> {
    let p = this.running.get(name);
    if (!p) {
      const record = this.opts.registry.get(name);
      p = this.opts
        .start({
          record,
          leases: this.opts.knownLeases(name),
          onLease: (lease) => this.opts.onLease(name, lease),
        })
        .then((network) => ({ network, nics: new Set<string>() }));
      this.running.set(name, p);
      p.then(
        () => this.log(`network ${name} started (${record.mode}, ${record.subnet})`),
        () => this.running.delete(name),
      );
    }
    return p.catch((err: unknown) => {
      throw new HostError('ENGINE_ERROR', `network '${name}' could not start: ${(err as Error).message}`);
    });
  }

  private async detach(name: string, nicId: string): Promise<void> {
    const run = await this.get(name);
    if (!run) return;
    await run.network.detachNic(nicId).catch(() => {});
    run.nics.delete(nicId);
    if (run.nics.size === 0) {
      this.running.delete(name);
      await run.network.close().catch(() => {});
      this.log(`network ${name} stopped (no NIC attached)`);
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }
}

function forwardSpec(p: PublishedPort, nic: NicConfig): ForwardSpec {
  return { proto: p.proto, hostIp: p.hostIp, hostPort: p.hostPort, guestMac: nic.mac, guestPort: p.guestPort };
}

function forwardError(p: PublishedPort, err: unknown): HostError {
  const code = (err as { code?: string }).code;
  const where = `${p.hostIp}:${p.hostPort}/${p.proto}`;
  if (code === 'EADDRINUSE' || code === 'AddressInUse')
    return new HostError('PORT_IN_USE', `host port ${where} is already in use`);
  if (code === 'EACCES' || code === 'PermissionDenied')
    return new HostError('PORT_IN_USE', `host port ${where} needs privileges the daemon does not have`);
  if (code === 'EADDRNOTAVAIL' || code === 'BadAddress')
    return new HostError('INVALID_CONFIG', `host address ${p.hostIp} is not an address of this host`);
  return new HostError('ENGINE_ERROR', `publishing ${where} failed: ${(err as Error).message}`);
}
