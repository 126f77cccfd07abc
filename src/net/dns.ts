/**
 * The DNS server at a network's DNS address: queries are parsed into typed values (one named error per
 * failure), answered from the network's own names (VMs, host.typevisor.internal, static hosts) and, in nat
 * mode, forwarded through an injected resolver. Only A records are forwarded: the Node resolver uses
 * getaddrinfo (dns.promises.lookup), so the host's /etc/hosts and nsswitch apply just as they do for host
 * programs; other types get an empty NOERROR answer, which makes stub resolvers fall back to A.
 */
export const DNS_PORT = 53;
export const TYPE_A = 1;
export const CLASS_IN = 1;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;

export type DnsParseError =
  | 'DnsTooShort'
  | 'DnsNotQuery'
  | 'DnsBadOpcode'
  | 'DnsBadQuestionCount'
  | 'DnsBadLabel'
  | 'DnsCompressedQuestion'
  | 'DnsNameTooLong'
  | 'DnsTruncatedQuestion';

export interface DnsQuery {
  id: number;
  recursionDesired: boolean;
  /** Lower-cased, without the trailing dot ('' for the root). */
  name: string;
  type: number;
  qclass: number;
  /** The question section's bytes, echoed in the response. */
  question: Uint8Array;
}

export interface DnsParseFailure {
  error: DnsParseError;
  /** Present when the header was readable, so a FORMERR/NOTIMP reply can be sent. */
  id?: number;
}

/** Parses a query with exactly one question (what every stub resolver sends). */
export function parseDnsQuery(p: Uint8Array): DnsQuery | DnsParseFailure {
  if (p.length < 12) return { error: 'DnsTooShort' };
  const id = (p[0] << 8) | p[1];
  if (p[2] & 0x80) return { error: 'DnsNotQuery' };
  if ((p[2] >>> 3) & 0xf) return { error: 'DnsBadOpcode', id };
  const qdcount = (p[4] << 8) | p[5];
  if (qdcount !== 1) return { error: 'DnsBadQuestionCount', id };
  let i = 12;
  let name = '';
  let wireLength = 1;
  while (true) {
    if (i >= p.length) return { error: 'DnsTruncatedQuestion', id };
    const len = p[i];
    if (len === 0) break;
    if ((len & 0xc0) === 0xc0) return { error: 'DnsCompressedQuestion', id };
    if (len > 63) return { error: 'DnsBadLabel', id };
    wireLength += len + 1;
    if (wireLength > 255) return { error: 'DnsNameTooLong', id };
    if (i + 1 + len > p.length) return { error: 'DnsTruncatedQuestion', id };
    let label = '';
    for (let k = i + 1; k <= i + len; k++) {
      const c = p[k];
      // Names we answer or forward are hostnames; refuse dots and control bytes inside labels.
      if (c <= 0x20 || c >= 0x7f || c === 0x2e) return { error: 'DnsBadLabel', id };
      label += String.fromCharCode(c >= 0x41 && c <= 0x5a ? c + 32 : c);
    }
    name = name ? `${name}.${label}` : label;
    i += len + 1;
  }
  if (i + 5 > p.length) return { error: 'DnsTruncatedQuestion', id };
  const type = (p[i + 1] << 8) | p[i + 2];
  const qclass = (p[i + 3] << 8) | p[i + 4];
  return { id, recursionDesired: (p[2] & 1) === 1, name, type, qclass, question: p.subarray(12, i + 5) };
}

/** A response echoing the question, with A answers (TTL in seconds). */
export function buildDnsResponse(
  id: number,
  recursionDesired: boolean,
  rcode: number,
  question: Uint8Array | undefined,
  answers: readonly number[],
  authoritative: boolean,
  ttl = 60,
): Uint8Array {
  const p = new Uint8Array(12 + (question?.length ?? 0) + answers.length * 16);
  p[0] = id >>> 8;
  p[1] = id & 0xff;
  p[2] = 0x80 | (authoritative ? 0x04 : 0) | (recursionDesired ? 1 : 0);
  p[3] = 0x80 | rcode;
  p[5] = question ? 1 : 0;
  p[7] = answers.length;
  let i = 12;
  if (question) {
    p.set(question, i);
    i += question.length;
  }
  for (const ip of answers) {
    // Name: a pointer to the question's name at offset 12.
    p[i] = 0xc0;
    p[i + 1] = 12;
    p[i + 3] = TYPE_A;
    p[i + 5] = CLASS_IN;
    p[i + 6] = ttl >>> 24;
    p[i + 7] = (ttl >>> 16) & 0xff;
    p[i + 8] = (ttl >>> 8) & 0xff;
    p[i + 9] = ttl & 0xff;
    p[i + 11] = 4;
    p[i + 12] = ip >>> 24;
    p[i + 13] = (ip >>> 16) & 0xff;
    p[i + 14] = (ip >>> 8) & 0xff;
    p[i + 15] = ip & 0xff;
    i += 16;
  }
  return p;
}

/** A query for test guests. */
export function buildDnsQuery(id: number, name: string, type = TYPE_A): Uint8Array {
  const labels = name.split('.').filter((l) => l.length > 0);
  const bytes: number[] = [id >>> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
  for (const l of labels) {
    bytes.push(l.length);
    for (let k = 0; k < l.length; k++) bytes.push(l.charCodeAt(k));
  }
  bytes.push(0, type >>> 8, type & 0xff, 0, CLASS_IN);
  return Uint8Array.from(bytes);
}

export interface DnsResponseView {
  id: number;
  rcode: number;
  answers: number[];
}

/** Reads a response (for test guests): A answers only. */
export function parseDnsResponse(p: Uint8Array): DnsResponseView | undefined {
  if (p.length < 12 || !(p[2] & 0x80)) return undefined;
  const qd = (p[4] << 8) | p[5];
  const an = (p[6] << 8) | p[7];
  let i = 12;
  const skipName = () => {
    while (i < p.length) {
      const l = p[i];
      if (l === 0) return void i++;
      if ((l & 0xc0) === 0xc0) return void (i += 2);
      i += l + 1;
    }
  };
  for (let q = 0; q < qd; q++) {
    skipName();
    i += 4;
  }
  const answers: number[] = [];
  for (let a = 0; a < an && i < p.length; a++) {
    skipName();
    const type = (p[i] << 8) | p[i + 1];
    const rdlen = (p[i + 8] << 8) | p[i + 9];
    if (type === TYPE_A && rdlen === 4)
      answers.push(((p[i + 10] << 24) | (p[i + 11] << 16) | (p[i + 12] << 8) | p[i + 13]) >>> 0);
    i += 10 + rdlen;
  }
  return { id: (p[0] << 8) | p[1], rcode: p[3] & 0xf, answers };
}

/** Outcome of a forwarded lookup. */
export type ResolveResult = { addresses: number[] } | 'NXDOMAIN' | 'SERVFAIL';

/** The host's resolver, injected (Node implementation: node-resolver.ts). */
export interface DnsResolver {
  lookupA(name: string): Promise<ResolveResult>;
}
