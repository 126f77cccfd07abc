/**
 * The nat-mode DNS forwarder's resolver: getaddrinfo through dns.promises.lookup, so the guest sees what host
 * programs see (/etc/hosts, nsswitch, the host's resolv.conf), including `localhost`.
 */
import { lookup } from 'node:dns/promises';
import type { DnsResolver, ResolveResult } from './dns.js';
import { parseIp } from './packet/ipv4.js';

export const nodeResolver: DnsResolver = {
  async lookupA(name: string): Promise<ResolveResult> {
    try {
      const found = await lookup(name, { family: 4, all: true });
      const addresses: number[] = [];
      for (const { address } of found) {
        const ip = parseIp(address);
        if (ip !== undefined && !addresses.includes(ip)) addresses.push(ip);
      }
      return { addresses };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return code === 'ENOTFOUND' || code === 'ENODATA' ? 'NXDOMAIN' : 'SERVFAIL';
    }
  },
};
