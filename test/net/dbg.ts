import { lossyTransfer } from './tcp-scenarios.js';
const p = JSON.parse(process.argv[2]!);
const { link, a, b, ra, rb, ab, ba } = lossyTransfer(p);
console.log(
  'A->B',
  rb.received,
  ab.length,
  'B->A',
  ra.received,
  ba.length,
  ra.ended,
  rb.ended,
  ra.closed,
  rb.closed,
  a.state,
  b.state,
  link.clock.now,
  link.clock.pending,
);
if (process.argv[3])
  for (const l of link.log) console.log(l.at, l.from, l.seg.flags, l.seg.seq, l.seg.ack, l.seg.window, l.seg.payload.length);
