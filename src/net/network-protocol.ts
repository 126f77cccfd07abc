/**
 * Messages between the daemon (network-host.ts) and a network worker (network-worker.ts). Control requests
 * carry an id and get exactly one reply; the worker also sends events (lease). Frames never travel here: each
 * NIC has its own MessagePort straight to the VM's worker (frame-port.ts).
 */
import type { MessagePort } from 'node:worker_threads';
import type { ForwardInfo, ForwardSpec } from './forwards.js';
import type { LeaseInfo, NetworkLimits, NetworkMode, NetworkStats } from './network.js';

/** The serializable part of a VirtualNetwork's configuration. */
export interface NetworkSpec {
  name: string;
  subnet: string;
  mode: NetworkMode;
  domain?: string;
  dnsHosts?: Record<string, string>;
  leases?: Record<string, string>;
  limits?: Partial<NetworkLimits>;
}

/** The first message to a network worker: which network it runs. */
export interface NetworkWorkerInit {
  type: 'init';
  spec: NetworkSpec;
}

export type NetworkRequest =
  | { id: number; type: 'attach-nic'; nicId: string; mac: string; hostname?: string; port: MessagePort }
  | { id: number; type: 'detach-nic'; nicId: string }
  | { id: number; type: 'add-forward'; spec: ForwardSpec }
  | { id: number; type: 'remove-forward'; forwardId: string }
  | { id: number; type: 'forget-lease'; mac: string }
  | { id: number; type: 'stats' }
  | { id: number; type: 'leases' }
  | { id: number; type: 'forwards' }
  | { id: number; type: 'close' };

export type NetworkRequestType = NetworkRequest['type'];

/** What each request answers with. */
export interface NetworkReplyValues {
  'attach-nic': null;
  'detach-nic': null;
  'add-forward': ForwardInfo;
  'remove-forward': null;
  'forget-lease': null;
  stats: NetworkStats;
  leases: LeaseInfo[];
  forwards: ForwardInfo[];
  close: null;
}

/** A named error crossing the thread boundary (classes do not survive structured clone). */
export interface WireError {
  name: string;
  code?: string;
  message: string;
}

export type NetworkWorkerMessage =
  /** Started, modules loaded, waiting for its NetworkWorkerInit. */
  | { kind: 'idle' }
  | { kind: 'ready' }
  | { kind: 'failed'; error: WireError }
  | { kind: 'reply'; id: number; ok: true; value: unknown }
  | { kind: 'reply'; id: number; ok: false; error: WireError }
  | { kind: 'lease'; mac: string; ip: string };

export function toWireError(e: unknown): WireError {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return { name: e.name, code: typeof code === 'string' ? code : undefined, message: e.message };
  }
  return { name: 'Error', message: String(e) };
}
