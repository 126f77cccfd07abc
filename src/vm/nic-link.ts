/**
 * The VM side of a NIC's link to its network's worker: src/net's frame port (batches of frames on a MessagePort),
 * plus a receiver that can be rebound. The link outlives the virtio-net device it feeds, since a guest reboot
 * builds a new board (and device) over the same link.
 */
import type { MessagePort } from 'node:worker_threads';
import { connectNicPort, type NicLink as FramePort } from '../net/frame-port.js';

export class NicLink {
  private receiver: ((frame: Uint8Array) => void) | undefined;
  private readonly port: FramePort;
  /** Frames from the network that arrived while no device was bound (between boots), dropped. */
  droppedUnbound = 0;

  constructor(port: MessagePort) {
    this.port = connectNicPort(port, {
      onFrames: (frames) => {
        const deliver = this.receiver;
        if (!deliver) this.droppedUnbound += frames.length;
        else for (const f of frames) deliver(f);
      },
    });
  }

  /** Routes frames from the network to a device (the newest board's); undefined while none is attached. */
  bind(receiver: ((frame: Uint8Array) => void) | undefined): void {
    this.receiver = receiver;
  }

  /** Queues a guest frame for the network; the device hands over a fresh copy, so its buffer is transferred. */
  send(frame: Uint8Array): void {
    this.port.send(frame, true);
  }

  /** Posts the queued frames now (at the end of a transmit batch) instead of at the end of the turn. */
  flush(): void {
    this.port.flush();
  }

  close(): void {
    this.receiver = undefined;
    this.port.close();
  }
}
