/**
 * The frame link between a VM's worker and its network's worker: one MessagePort per NIC, frames batched so a
 * message carries every frame produced in one event-loop turn (one postMessage per turn per direction, not one
 * per frame), with the frames' ArrayBuffers transferred when the sender owns them whole.
 * Both sides use connectNicPort: the VM worker (virtio-net) and the network worker (the switch port).
 */
import type { MessagePort } from 'node:worker_threads';

/** Frames per message beyond which the rest of a batch is dropped (a sender gone wild). */
export const MAX_FRAMES_PER_BATCH = 4096;
/** Larger than any frame (MTU 1500): such "frames" are dropped before they reach the switch. */
export const MAX_FRAME_BYTES = 65536;

export interface NicPortHandlers {
  onFrames(frames: Uint8Array[]): void;
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
  send(frame: Uint8Array, owned?: boolean): void;
  /** Posts the queued frames now (they go at the end of the turn anyway). */
  flush(): void;
  close(): void;
  readonly counters: NicPortCounters;
}

export function connectNicPort(port: MessagePort, handlers: NicPortHandlers): NicLink {
  let batch: Uint8Array[] = [];
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
    batch = [];
    transfer = [];
    transferSet = new Set();
    counters.sentBatches++;
    counters.sentFrames += frames.length;
    port.postMessage(frames, list);
  };

  port.on('message', (msg: unknown) => {
    if (closed) return;
    if (!Array.isArray(msg)) {
      counters.droppedFrames++;
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
    send(frame, owned = false) {
      if (closed) return;
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
