import { VirtualNetwork, type VirtualNetworkConfig } from '../../src/net/network.js';
import type { HostSockets } from '../../src/net/host-io.js';
import { ManualClock } from './guest.js';

/** Sockets for tests that must never reach the host: any use fails the test loudly. */
export const noSockets: HostSockets = {
  udpOpen() {
    throw new Error('test network opened a host UDP socket');
  },
  udpListen() {
    throw new Error('test network listened on UDP');
  },
  tcpConnect() {
    throw new Error('test network opened a host TCP connection');
  },
  tcpListen() {
    throw new Error('test network listened on TCP');
  },
};

export function makeNetwork(overrides: Partial<VirtualNetworkConfig> = {}): {
  net: VirtualNetwork;
  clock: ManualClock;
  leases: [string, string][];
} {
  const clock = new ManualClock();
  const leases: [string, string][] = [];
  const net = new VirtualNetwork({
    name: 'test',
    subnet: '10.0.2.0/24',
    mode: 'nat',
    sockets: noSockets,
    clock,
    onLease: (mac, ip) => leases.push([mac, ip]),
    ...overrides,
  });
  return { net, clock, leases };
}

export const ip = (text: string): number => text.split('.').reduce((a, o) => a * 256 + Number(o), 0);
