/** Scenarios shared by the property tests and by reproductions of their counterexamples. */
import { Link, connectedPair, pump, randomBytes, type LinkVerdict } from './tcp-harness.js';

export interface LossyTransferParams {
  faults: LinkVerdict[];
  sizeAB: number;
  sizeBA: number;
  seed: number;
  mssA: number;
  mssB: number;
  rcvA: number;
  rcvB: number;
  sndA: number;
  consumeDelayB: number;
  isnA: number;
  isnB: number;
}

/** Both sides send a stream and end, over a link applying faults[i] to the i-th segment; runs until idle. */
export function lossyTransfer(p: LossyTransferParams) {
  const link = new Link();
  link.fault = (_from, _seg, index) => p.faults[index] ?? {};
  // TIME-WAIT outlasts two retransmission intervals, so a lost last ACK is always answered and both ends close
  // cleanly (with the default 2 s a late retransmission can meet a closed port and a RST, as with any stack).
  const common = { maxRetransmits: 40, maxSynRetransmits: 40, maxRtoMs: 5_000, timeWaitMs: 12_000 };
  const { a, b, ra, rb } = connectedPair(
    { ...common, mss: p.mssA, receiveBufferBytes: p.rcvA, sendBufferBytes: p.sndA, initialSeq: p.isnA },
    { ...common, mss: p.mssB, receiveBufferBytes: p.rcvB, initialSeq: p.isnB },
    link,
  );
  // b's reader is slow: it gives bytes back only after a delay.
  rb.autoConsume = false;
  const onData = b.onData!;
  b.onData = (bytes) => {
    onData(bytes);
    link.clock.setTimer(p.consumeDelayB, () => b.consumed(bytes.length));
  };
  const ab = randomBytes(p.sizeAB, p.seed);
  const ba = randomBytes(p.sizeBA, p.seed ^ 0x5555);
  pump(a, ab, 7000);
  pump(b, ba, 5000);
  link.clock.runUntilIdle(3_600_000);
  return { link, a, b, ra, rb, ab, ba };
}
