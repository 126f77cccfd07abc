/**
 * The daemon's handle on one virtual network: starts its worker thread, turns calls into typed control
 * requests, and hands out the VM side of each NIC's frame port. Errors from the worker come back as the same
 * named errors (ForwardError, NetworkError, SubnetError) with their codes.
 */
import { MessageChannel, Worker, type MessagePort, type ResourceLimits } from 'node:worker_threads';
import { workerEntry, workerReady } from './worker-ready.js';
import { ForwardError, type ForwardErrorCode, type ForwardInfo, type ForwardSpec } from './forwards.js';
import { NetworkError, type LeaseInfo, type NetworkErrorCode, type NetworkStats } from './network.js';
import { parseCidr, SubnetError, type SubnetErrorCode } from './subnet.js';
import type {
  NetworkReplyValues,
  NetworkRequest,
  NetworkRequestType,
  NetworkSpec,
  NetworkWorkerInit,
  NetworkWorkerMessage,
  WireError,
} from './network-protocol.js';

export class NetworkWorkerError extends Error {
  override readonly name = 'NetworkWorkerError';
}

function fromWire(e: WireError): Error {
  switch (e.name) {
    case 'ForwardError':
      return new ForwardError(e.code as ForwardErrorCode, e.message);
    case 'NetworkError':
      return new NetworkError(e.code as NetworkErrorCode, e.message);
    case 'SubnetError':
      return new SubnetError(e.code as SubnetErrorCode, e.message);
    default:
      return new NetworkWorkerError(`${e.name}: ${e.message}`);
  }
}

export interface NetworkHostOptions {
  resourceLimits?: ResourceLimits;
  requestTimeoutMs?: number;
  /**
   * A worker from spawnNetworkWorker, started ahead of need and not used yet (the daemon's warm pool): the
   * network starts in it instead of in a new thread. Ignored (a new one is spawned) when it has exited meanwhile.
   */
  worker?: Worker;
}

const DEFAULT_LIMITS: ResourceLimits = { maxOldGenerationSizeMb: 128, maxYoungGenerationSizeMb: 32 };

/**
 * Starts a network worker with no network in it yet; resolves once its modules are loaded. Most of a network's
 * start time is this, so the daemon keeps one such worker ready (startNetwork's `worker`).
 */
export function spawnNetworkWorker(resourceLimits: ResourceLimits = DEFAULT_LIMITS, name = 'net:idle'): Promise<Worker> {
  const { entry, eval: evalEntry } = workerEntry('network-worker', import.meta.url);
  const worker = new Worker(entry, { eval: evalEntry, resourceLimits, name });
  return workerReady<NetworkWorkerMessage>(
    worker,
    (msg) => msg.kind === 'idle',
    (code) => new NetworkWorkerError(`a network worker exited while starting (code ${code})`),
  );
}

/** True while a worker from spawnNetworkWorker can still take a network. */
function alive(worker: Worker): boolean {
  return worker.threadId !== -1;
}

export interface NetworkHandle {
  readonly name: string;
  /** Plugs a NIC in; resolves with the port the VM's worker uses (connectNicPort on it). */
  attachNic(nicId: string, nic: { mac: string; hostname?: string }): Promise<MessagePort>;
  /**
   * Plugs a NIC in over a channel the caller made: `port` is the network's end (transferred), the VM holds the
   * other one and may already send on it (frames wait in the channel until the network takes them).
   */
  attachNicPort(nicId: string, nic: { mac: string; hostname?: string }, port: MessagePort): Promise<void>;
  detachNic(nicId: string): Promise<void>;
  /** Rejects with ForwardError (AddressInUse, PermissionDenied, BadAddress, ...). */
  addForward(spec: ForwardSpec): Promise<ForwardInfo>;
  removeForward(forwardId: string): Promise<void>;
  forwards(): Promise<ForwardInfo[]>;
  stats(): Promise<NetworkStats>;
  leases(): Promise<LeaseInfo[]>;
  forgetLease(mac: string): Promise<void>;
  /** A MAC got a new address: persist it in the VM's record. */
  onLease(cb: (lease: { mac: string; ip: string }) => void): void;
  /** The worker died unexpectedly. */
  onExit(cb: (reason: string) => void): void;
  close(): Promise<void>;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

/** Starts a network's worker. Rejects with SubnetError/NetworkError for a bad configuration. */
export async function startNetwork(spec: NetworkSpec, options: NetworkHostOptions = {}): Promise<NetworkHandle> {
  parseCidr(spec.subnet);
  const worker =
    options.worker && alive(options.worker)
      ? options.worker
      : await spawnNetworkWorker(options.resourceLimits ?? DEFAULT_LIMITS, `net:${spec.name}`);
  const timeoutMs = options.requestTimeoutMs ?? 15_000;
  const pending = new Map<number, Pending>();
  const leaseListeners: ((l: { mac: string; ip: string }) => void)[] = [];
  const exitListeners: ((reason: string) => void)[] = [];
  let nextId = 1;
  let exited = false;
  let closing = false;

  const ready = new Promise<void>((resolve, reject) => {
    worker.on('message', (msg: NetworkWorkerMessage) => {
      switch (msg.kind) {
        case 'ready':
          resolve();
          return;
        case 'failed':
          reject(fromWire(msg.error));
          return;
        case 'lease':
          for (const cb of leaseListeners) cb({ mac: msg.mac, ip: msg.ip });
          return;
        case 'reply': {
          const p = pending.get(msg.id);
          if (!p) return;
          pending.delete(msg.id);
          clearTimeout(p.timer);
          if (msg.ok) p.resolve(msg.value);
          else p.reject(fromWire(msg.error));
        }
      }
    });
    worker.on('error', (err) => reject(err));
    worker.once('exit', (code) => {
      exited = true;
      const reason = `network worker '${spec.name}' exited (code ${code})`;
      reject(new NetworkWorkerError(reason));
      for (const p of pending.values()) {
        clearTimeout(p.timer);
        p.reject(new NetworkWorkerError(reason));
      }
      pending.clear();
      if (!closing) for (const cb of exitListeners) cb(reason);
    });
  });
  worker.postMessage({ type: 'init', spec } satisfies NetworkWorkerInit);
  await ready;

  function request<T extends NetworkRequestType>(
    req: Extract<NetworkRequest, { type: T }> | Omit<Extract<NetworkRequest, { type: T }>, 'id'>,
    transfer: MessagePort[] = [],
  ): Promise<NetworkReplyValues[T]> {
    if (exited) return Promise.reject(new NetworkWorkerError(`network '${spec.name}' is not running`));
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new NetworkWorkerError(`network worker '${spec.name}' did not answer '${req.type}' within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      worker.postMessage({ ...req, id }, transfer);
    });
  }

  const attachNicPort: NetworkHandle['attachNicPort'] = async (nicId, nic, port) => {
    await request<'attach-nic'>({ type: 'attach-nic', nicId, mac: nic.mac, hostname: nic.hostname, port }, [port]);
  };

  return {
    name: spec.name,
    async attachNic(nicId, nic) {
      const channel = new MessageChannel();
      try {
        await attachNicPort(nicId, nic, channel.port2);
      } catch (e) {
        channel.port1.close();
        throw e;
      }
      return channel.port1;
    },
    attachNicPort,
    detachNic: async (nicId) => void (await request<'detach-nic'>({ type: 'detach-nic', nicId })),
    addForward: (fwd) => request<'add-forward'>({ type: 'add-forward', spec: fwd }),
    removeForward: async (forwardId) => void (await request<'remove-forward'>({ type: 'remove-forward', forwardId })),
    forwards: () => request<'forwards'>({ type: 'forwards' }),
    stats: () => request<'stats'>({ type: 'stats' }),
    leases: () => request<'leases'>({ type: 'leases' }),
    forgetLease: async (mac) => void (await request<'forget-lease'>({ type: 'forget-lease', mac })),
    onLease: (cb) => void leaseListeners.push(cb),
    onExit: (cb) => void exitListeners.push(cb),
    async close() {
      if (exited) return;
      closing = true;
      const gone = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      try {
        await request<'close'>({ type: 'close' });
      } catch {
        // A wedged worker is terminated below either way.
      }
      const timer = setTimeout(() => void worker.terminate(), 2000);
      await gone;
      clearTimeout(timer);
    },
  };
}
