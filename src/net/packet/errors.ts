/**
 * Every reason a guest frame can be refused by the parsers, by name. Parsers return one of these strings
 * instead of throwing: a hostile guest sends malformed frames at line rate, and a string compare costs nothing
 * while an exception would cost a stack trace per frame.
 */
export const PACKET_ERRORS = [
  'FrameTooShort',
  'FrameTooLong',
  'VlanTagged',
  'UnknownEtherType',
  'BadArpHeader',
  'BadIpVersion',
  'BadIpHeaderLength',
  'BadIpTotalLength',
  'BadIpChecksum',
  'IpFragment',
  'UnknownIpProtocol',
  'BadIcmpLength',
  'BadIcmpChecksum',
  'BadUdpLength',
  'BadUdpChecksum',
  'BadTcpDataOffset',
  'BadTcpChecksum',
  'BadTcpOption',
] as const;

export type PacketError = (typeof PACKET_ERRORS)[number];

export function isPacketError(v: unknown): v is PacketError {
  return typeof v === 'string';
}

/** A counter per named error, for stats. */
export function zeroPacketErrorCounts(): Record<PacketError, number> {
  const counts = {} as Record<PacketError, number>;
  for (const e of PACKET_ERRORS) counts[e] = 0;
  return counts;
}
