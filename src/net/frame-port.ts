/**
 * The frame link between a VM's worker and its network's worker: one MessagePort per NIC, frames batched so a
 * message carries every frame produced in one event-loop turn (one postMessage per turn per direction, not one
 * per frame), with the frames' ArrayBuffers transferred when the sender owns them whole.
 * Both sides use connectNicPort: the VM worker (virtio-net) and the network worker (the switch port).
 *
 * A message is the array of frames, or, when some frame of the batch carries offload metadata (checksum left
 * to the receiver, a TCP super-segment), `{ frames, offloads }` with one entry (or null) per frame: a batch
 * without offloads is exactly what it was before offloads existed. Metadata is re-read field by field here
 * (readOffload); checking it against its frame is the receiver's business (the switch, the device).
 */
import type { MessagePort } from 'node:worker_threads';
import { MAX_GSO_FRAME_BYTES, readOffload, type FrameOffload } from './packet/offload.js';

/** Frames per message beyond which the rest of a batch is dropped (a sender gone wild). */
export const MAX_FRAMES_PER_BATCH = 4096;
/** Larger than any frame (a 64 KiB GSO super-segment with its Ethernet header): dropped before the switch. */
export const MAX_FRAME_BYTES = MAX_GSO_FRAME_BYTES;

export interface NicPortHandlers {
  /** `offloads[i]` belongs to `frames[i]`; undefined when no frame of the batch has any. */
  onFrames(frames: Uint8Array[], offloads?: (FrameOffload | null)[]): void;
  /** The other side closed the port. */
  onClose?(): void;
}

export interface NicPortCounters {
  sentFrames: number;
  sentBatches: number;
  receivedFrames: number;
  receivedBatches: number;
  /** Malformed messages or items, and frames past MAX_FRAMES_PER_BATCH. */
  droppedFrames: number;
}

export interface NicLink {
  /**
   * Queues a frame for the other side. `owned`: the caller gives the frame away (its buffer may be transferred,
   * and the caller must not touch it again); otherwise it is copied by postMessage.
   */
  send(frame: Uint8Array, owned?: boolean, offload?: FrameOffload): void;
  /** Posts the queued frames now (they go at the end of the turn anyway). */
  flush(): void;
  close(): void;
  readonly counters: NicPortCounters;
}

export function connectNicPort(port: MessagePort, handlers: NicPortHandlers): NicLink {
  let batch: Uint8Array[] = [];
  let offloads: (FrameOffload | null)[] | null = null;
  let transfer: ArrayBuffer[] = [];
  let transferSet = new Set<ArrayBuffer>();
  let scheduled = false;
  let closed = false;
  const counters: NicPortCounters = { sentFrames: 0, sentBatches: 0, receivedFrames: 0, receivedBatches: 0, droppedFrames: 0 };

  const flush = () => {
    scheduled = false;
    if (closed || batch.length === 0) return;
    const frames = batch;
    const list = transfer;
    const meta = offloads;
    batch = [];
    offloads = null;
    transfer = [];
    transferSet = new Set();
    counters.sentBatches++;
    counters.sentFrames += frames.length;
    port.postMessage(meta ? { frames, offloads: meta } : frames, list);
  };

  const receiveOffloaded = (msg: { frames?: unknown; offloads?: unknown }) => {
    const frames = msg.frames;
    const meta = msg.offloads;
    if (!Array.isArray(frames) || !Array.isArray(meta) || meta.length !== frames.length) {
      counters.droppedFrames++;
      return;
    }
    counters.receivedBatches++;
    const n = Math.min(frames.length, MAX_FRAMES_PER_BATCH);
    counters.droppedFrames += frames.length - n;
    const good: Uint8Array[] = [];
    const goodMeta: (FrameOffload | null)[] = [];
    for (let i = 0; i < n; i++) {
      const f: unknown = frames[i];
      const m: unknown = meta[i];
      const o = m === null ? null : readOffload(m);
      if (!(f instanceof Uint8Array) || f.length > MAX_FRAME_BYTES || (m !== null && o === null)) {
        counters.droppedFrames++;
        continue;
      }
      good.push(f);
      goodMeta.push(o);
    }
    counters.receivedFrames += good.length;
    if (good.length > 0) handlers.onFrames(good, goodMeta);
  };

  port.on('message', (msg: unknown) => {
    if (closed) return;
    if (!Array.isArray(msg)) {
      if (typeof msg === 'object' && msg !== null) receiveOffloaded(msg);
      else counters.droppedFrames++;
      return;
    }
    counters.receivedBatches++;
    let frames = msg as unknown[];
    if (frames.length > MAX_FRAMES_PER_BATCH) {
      counters.droppedFrames += frames.length - MAX_FRAMES_PER_BATCH;
      frames = frames.slice(0, MAX_FRAMES_PER_BATCH);
    }
    let ok = true;
    for (const f of frames) if (!(f instanceof Uint8Array) || f.length > MAX_FRAME_BYTES) ok = false;
    const good = ok
      ? (frames as Uint8Array[])
      : (frames.filter((f) => f instanceof Uint8Array && f.length <= MAX_FRAME_BYTES) as Uint8Array[]);
    counters.droppedFrames += frames.length - good.length;
    counters.receivedFrames += good.length;
    if (good.length > 0) handlers.onFrames(good);
  });
  port.on('close', () => {
    closed = true;
    handlers.onClose?.();
  });
  port.start();

  return {
    counters,
    send(frame, owned = false, offload) {
      if (closed) return;
      if (offload !== undefined && offloads === null) offloads = batch.map(() => null);
      if (offloads !== null) offloads.push(offload ?? null);
      const buf = frame.buffer;
      if (
        owned &&
        buf instanceof ArrayBuffer &&
        frame.byteOffset === 0 &&
        frame.byteLength === buf.byteLength &&
        !transferSet.has(buf)
      ) {
        transferSet.add(buf);
        transfer.push(buf);
      }
      batch.push(frame);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    flush,
    close() {
      if (closed) return;
      flush();
      closed = true;
      port.close();
    },
  };
}
