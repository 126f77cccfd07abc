/** The Internet checksum (RFC 1071): ones' complement sum of 16-bit big-endian words. */

/** Adds bytes [start, end) to a running 32-bit sum (not yet folded). */
export function sumBytes(buf: Uint8Array, start: number, end: number, sum = 0): number {
  let i = start;
  const evenEnd = end - ((end - start) & 1);
  for (; i < evenEnd; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  if (i < end) sum += buf[i] << 8;
  // Fold often enough that the sum stays a small integer even for 64 KiB inputs.
  return (sum & 0xffff) + (sum >>> 16);
}

export function foldChecksum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export function internetChecksum(buf: Uint8Array, start: number, end: number): number {
  return foldChecksum(sumBytes(buf, start, end));
}

/** The IPv4 pseudo-header sum used by UDP and TCP (RFC 768, RFC 9293 §3.1). */
export function pseudoHeaderSum(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}
