/**
 * The VM side of a NIC's link to its network: a frame transport (src/net's frame port on a MessagePort in a
 * worker, or a channel multiplexed on the VM process's socket), plus a receiver that can be rebound. The link
 * outlives the virtio-net device it feeds, since a guest reboot builds a new board (and device) over the same link.
 */
import type { MessagePort } from 'node:worker_threads';
import { connectNicPort } from '../net/frame-port.js';
import type { FrameOffload } from '../net/packet/offload.js';

/** Where a link's guest frames go. */
export interface FrameTransport {
  /** `owned`: the caller gives the frame away (its buffer may be transferred); `offload`: its offload metadata. */
  send(frame: Uint8Array, owned?: boolean, offload?: FrameOffload): void;
  /** Sends the queued frames now instead of at the end of the turn. */
  flush(): void;
  close(): void;
}

type Receiver = (frame: Uint8Array, offload?: FrameOffload | null) => void;
type OnFrames = (frames: Uint8Array[], offloads?: (FrameOffload | null)[]) => void;

export class NicLink {
  private receiver: Receiver | undefined;
  private readonly transport: FrameTransport;
  /** Frames from the network that arrived while no device was bound (between boots), dropped. */
  droppedUnbound = 0;

  /** `connect` builds the transport, handing it the function that takes the network's frames. */
  constructor(connect: (onFrames: OnFrames) => FrameTransport) {
    this.transport = connect((frames, offloads) => {
      const deliver = this.receiver;
      if (!deliver) this.droppedUnbound += frames.length;
      else if (offloads) for (let i = 0; i < frames.length; i++) deliver(frames[i]!, offloads[i]);
      else for (const f of frames) deliver(f);
    });
  }

  /** A link over a MessagePort to the network's worker (frames in batches, src/net/frame-port.ts). */
  static overPort(port: MessagePort): NicLink {
    return new NicLink((onFrames) => connectNicPort(port, { onFrames }));
  }

  /** Routes frames from the network to a device (the newest board's); undefined while none is attached. */
  bind(receiver: Receiver | undefined): void {
    this.receiver = receiver;
  }

  /** Queues a guest frame for the network; the device hands over a fresh copy, so its buffer is transferred. */
  send(frame: Uint8Array, offload?: FrameOffload): void {
    this.transport.send(frame, true, offload);
  }

  /** Posts the queued frames now (at the end of a transmit batch) instead of at the end of the turn. */
  flush(): void {
    this.transport.flush();
  }

  close(): void {
    this.receiver = undefined;
    this.transport.close();
  }
}
