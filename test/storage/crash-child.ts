/**
 * Child process for the crash-safety test: opens a qcow2 image and writes to it forever (random writes,
 * discards, write-zeroes, several in flight at once, a flush every few batches) until the parent SIGKILLs it.
 * Journal lines (appended synchronously, so they survive the kill): {"start":true} when a process starts,
 * {"op":...} before an operation is issued, {"flushed":n} after a flush resolved that covers the first n
 * operations of this process.
 */
import { appendFileSync } from 'node:fs';
import { openDisk } from '../../src/storage/index.js';
import { applyOp, randomOps, rng, type Op } from './helpers.js';

const [image, journal, seedText] = process.argv.slice(2);
const rand = rng(Number(seedText));
const disk = await openDisk(image!);
// The child keeps no model of the contents (the parent replays the journal); applyOp needs a target.
const sink = { set: () => undefined, fill: () => undefined } as unknown as Uint8Array;
appendFileSync(journal!, JSON.stringify({ start: true }) + '\n');
process.stdout.write('ready\n');
let issued = 0;
for (;;) {
  const batch: Op[] = randomOps(rand, 4, disk.size, 65536).filter((o) => o.op !== 'flush');
  for (const o of batch) appendFileSync(journal!, JSON.stringify(o) + '\n');
  issued += batch.length;
  await Promise.all(batch.map((o) => applyOp(disk, sink, o)));
  if (rand() < 0.3) {
    const upTo = issued;
    await disk.flush();
    appendFileSync(journal!, JSON.stringify({ flushed: upTo }) + '\n');
  }
}
