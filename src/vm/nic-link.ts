/**
 * The VM side of a NIC's link to its network's worker: a MessagePort carrying batches of Ethernet frames
 * (one message = Uint8Array[]), the format src/net's network worker speaks. It outlives the virtio-net device it
 * feeds, since a guest reboot builds a new board (and device) over the same link.
 */
import type { MessagePort } from 'node:worker_threads';

/** Frames held back while the network does not take them, before new ones are dropped. */
const MAX_PENDING_FRAMES = 1024;

export class NicLink {
  private outgoing: Uint8Array[] = [];
  private receiver: ((frame: Uint8Array) => void) | undefined;
  private closed = false;
  /** Frames from the network that arrived while no device was bound (between boots), dropped. */
  droppedUnbound = 0;
  droppedOverflow = 0;

  constructor(private readonly port: MessagePort) {
    port.on('message', (frames: unknown) => {
      if (!Array.isArray(frames)) return;
      const deliver = this.receiver;
      for (const f of frames) {
        if (!(f instanceof Uint8Array)) continue;
        if (deliver) deliver(f);
        else this.droppedUnbound++;
      }
    });
    port.on('close', () => {
      this.closed = true;
    });
  }

  /** Routes frames from the network to a device (the newest board's); undefined while none is attached. */
  bind(receiver: ((frame: Uint8Array) => void) | undefined): void {
    this.receiver = receiver;
  }

  /** Queues a guest frame for the network; `flush` posts the batch. The frame must not be reused by the caller. */
  send(frame: Uint8Array): void {
    if (this.closed) return;
    if (this.outgoing.length >= MAX_PENDING_FRAMES) {
      this.droppedOverflow++;
      return;
    }
    this.outgoing.push(frame);
  }

  /** Posts what `send` queued as one message; buffers that belong to a frame alone are transferred, not copied. */
  flush(): void {
    if (this.outgoing.length === 0 || this.closed) return;
    const batch = this.outgoing;
    this.outgoing = [];
    const transfer = new Set<ArrayBuffer>();
    for (const f of batch) {
      if (f.byteOffset === 0 && f.byteLength === f.buffer.byteLength && f.buffer instanceof ArrayBuffer) transfer.add(f.buffer);
    }
    this.port.postMessage(batch, [...transfer]);
  }

  close(): void {
    this.closed = true;
    this.receiver = undefined;
    this.port.close();
  }
}
