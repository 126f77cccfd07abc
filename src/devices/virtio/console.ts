/**
 * virtio-console (virtio 1.2 §5.3), device id 3, with a single port (no MULTIPORT): receiveq 0 carries host bytes
 * into the guest, transmitq 1 carries guest bytes out. The guest sees it as /dev/hvc0. The host side is a plain
 * byte stream: `input(bytes)` and an output callback.
 */
import { VirtioMmioDevice, type VirtioContext } from './mmio.js';
import type { DescriptorChain } from './virtqueue.js';

export const VIRTIO_ID_CONSOLE = 3;
const RECEIVEQ = 0;
const TRANSMITQ = 1;
// §5.3.4 struct virtio_console_config: cols u16, rows u16, max_nr_ports u32, emerg_wr u32 (none offered).
const CONFIG_SIZE = 12;
const QUEUE_SIZE = 128;
/** Host bytes waiting for guest receive buffers; beyond this, input is dropped (and counted) rather than hoarded. */
export const CONSOLE_INPUT_LIMIT = 1024 * 1024;

export interface VirtioConsoleOptions {
  /** Called with each buffer of bytes the guest writes to the port. */
  onOutput?: (bytes: Uint8Array) => void;
}

export interface VirtioConsoleStateData {
  pendingInput: Uint8Array;
}

export class VirtioConsole extends VirtioMmioDevice<VirtioConsoleStateData> {
  private outputListeners: ((bytes: Uint8Array) => void)[] = [];
  /** Guest receive buffers, in the order the driver made them available. */
  private receiveBuffers: DescriptorChain[] = [];
  private pendingInput: Uint8Array[] = [];
  private pendingBytes = 0;
  private readonly stats = { bytesIn: 0, bytesOut: 0, writes: 0, droppedInput: 0, listenerErrors: 0 };

  constructor(ctx: VirtioContext, options: VirtioConsoleOptions = {}) {
    const limits = { maxChainBytes: 1024 * 1024 };
    super(
      ctx,
      VIRTIO_ID_CONSOLE,
      0n,
      [
        { maxSize: QUEUE_SIZE, limits },
        { maxSize: QUEUE_SIZE, limits },
      ],
      CONFIG_SIZE,
      'virtio-console',
      1,
    );
    if (options.onOutput) this.outputListeners.push(options.onOutput);
  }

  /** Registers a listener for guest output; returns a function that removes it. */
  onOutput(listener: (bytes: Uint8Array) => void): () => void {
    this.outputListeners.push(listener);
    return () => {
      this.outputListeners = this.outputListeners.filter((l) => l !== listener);
    };
  }

  /** Queues host bytes for the guest; they are delivered as soon as the guest has receive buffers. */
  input(bytes: Uint8Array | string): void {
    const data = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes.slice();
    const room = CONSOLE_INPUT_LIMIT - this.pendingBytes;
    if (data.length > room) this.stats.droppedInput += data.length - Math.max(0, room);
    const kept = data.subarray(0, Math.max(0, room));
    if (kept.length > 0) {
      this.pendingInput.push(kept);
      this.pendingBytes += kept.length;
    }
    this.deliver();
  }

  /** Host bytes not yet taken by the guest. */
  get pendingInputBytes(): number {
    return this.pendingBytes;
  }

  protected handleChain(queue: number, chain: DescriptorChain): void {
    if (queue === RECEIVEQ) {
      this.receiveBuffers.push(chain);
      this.deliver();
      return;
    }
    if (queue === TRANSMITQ) {
      const bytes = this.readChain(chain);
      this.stats.bytesOut += bytes.length;
      this.stats.writes++;
      this.complete(chain, 0);
      for (const l of this.outputListeners) {
        try {
          l(bytes);
        } catch {
          this.stats.listenerErrors++; // a host-side listener bug must not break the device
        }
      }
    }
  }

  protected override onReset(): void {
    this.receiveBuffers = [];
  }

  protected saveDevice(): VirtioConsoleStateData {
    return { pendingInput: concat(this.pendingInput) };
  }
  protected loadDevice(data: VirtioConsoleStateData): void {
    this.receiveBuffers = [];
    this.pendingInput = data.pendingInput.length > 0 ? [data.pendingInput.slice()] : [];
    this.pendingBytes = data.pendingInput.length;
  }
  protected override deviceMetrics(): Record<string, number> {
    return { ...this.stats, pendingInput: this.pendingBytes, receiveBuffers: this.receiveBuffers.length };
  }

  /** Moves pending host bytes into guest receive buffers, one used entry per buffer. */
  private deliver(): void {
    while (this.pendingBytes > 0 && this.receiveBuffers.length > 0) {
      const chain = this.receiveBuffers.shift()!;
      if (!this.isCurrent(chain)) continue;
      const take = Math.min(chain.writableBytes, this.pendingBytes);
      if (take === 0) {
        this.complete(chain, 0);
        continue;
      }
      const all = concat(this.pendingInput);
      let written = 0;
      this.guard(() => {
        written = this.writeChain(chain, 0, all.subarray(0, take));
        this.complete(chain, written);
      });
      const rest = all.subarray(written);
      this.pendingInput = rest.length > 0 ? [rest] : [];
      this.pendingBytes = rest.length;
      this.stats.bytesIn += written;
      if (written === 0) break; // the device entered NEEDS_RESET
    }
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
