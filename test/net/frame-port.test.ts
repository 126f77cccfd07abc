/**
 * The frame port's offload extension: a batch with offloaded frames carries one metadata entry per frame, a
 * batch without stays a plain array, and malformed metadata from the other side drops only its own frame.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageChannel } from 'node:worker_threads';
import { connectNicPort } from '../../src/net/frame-port.js';
import type { FrameOffload } from '../../src/net/packet/offload.js';

const gso: FrameOffload = { flags: 1, gsoType: 1, gsoSize: 1448, csumStart: 34, csumOffset: 16 };

function received() {
  const batches: { frames: Uint8Array[]; offloads: (FrameOffload | null)[] | undefined }[] = [];
  let wake: () => void = () => {};
  return {
    batches,
    handlers: {
      onFrames(frames: Uint8Array[], offloads?: (FrameOffload | null)[]) {
        batches.push({ frames, offloads });
        wake();
      },
    },
    next: () => new Promise<void>((r) => (wake = r)),
  };
}

test('frame port: offload metadata crosses with its frames; plain batches stay plain', async () => {
  const { port1, port2 } = new MessageChannel();
  const rx = received();
  const a = connectNicPort(port1, { onFrames: () => {} });
  const b = connectNicPort(port2, rx.handlers);
  let got = rx.next();
  a.send(new Uint8Array(60).fill(1));
  a.send(new Uint8Array(40000).fill(2), true, gso);
  a.send(new Uint8Array(70).fill(3));
  await got;
  assert.deepEqual(
    rx.batches[0]!.frames.map((f) => [f.length, f[0]]),
    [
      [60, 1],
      [40000, 2],
      [70, 3],
    ],
  );
  assert.deepEqual(rx.batches[0]!.offloads, [null, gso, null]);
  got = rx.next();
  a.send(new Uint8Array(60));
  await got;
  assert.equal(rx.batches[1]!.offloads, undefined, 'no offload in the batch: no metadata array');
  a.close();
  b.close();
});

test('frame port: malformed offload messages drop only what is malformed', async () => {
  const { port1, port2 } = new MessageChannel();
  const rx = received();
  const b = connectNicPort(port2, rx.handlers);
  const got = rx.next();
  port1.postMessage({ frames: [new Uint8Array(60)], offloads: [] }); // lengths differ: all dropped
  port1.postMessage({ frames: 'x', offloads: [] });
  port1.postMessage(null);
  port1.postMessage({
    frames: [new Uint8Array(60), new Uint8Array(61), 'x', new Uint8Array(62)],
    offloads: [{ ...gso, gsoSize: -1 }, null, null, gso],
  });
  await got;
  assert.deepEqual(
    rx.batches[0]!.frames.map((f) => f.length),
    [61, 62],
  );
  assert.deepEqual(rx.batches[0]!.offloads, [null, gso]);
  assert.equal(b.counters.droppedFrames, 3 + 2);
  port1.close();
  b.close();
});
