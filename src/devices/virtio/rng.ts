/**
 * virtio-rng / entropy device (virtio 1.2 §5.4), device id 4: fills each device-writable buffer of requestq with
 * random bytes from the host's Web Crypto (globalThis.crypto, present in Node 20 and in browsers).
 */
import { VirtioMmioDevice, type VirtioContext } from './mmio.js';
import type { DescriptorChain } from './virtqueue.js';

export const VIRTIO_ID_ENTROPY = 4;
/** crypto.getRandomValues refuses more than 65536 bytes per call. */
const ENTROPY_CALL_MAX = 65536;
/** Largest request we fill; the Linux driver asks for at most a few hundred bytes. */
const MAX_REQUEST = 1024 * 1024;

export type EntropySource = (into: Uint8Array) => void;

export const webCryptoEntropy: EntropySource = (into) => {
  for (let at = 0; at < into.length; at += ENTROPY_CALL_MAX) {
    globalThis.crypto.getRandomValues(into.subarray(at, Math.min(into.length, at + ENTROPY_CALL_MAX)));
  }
};

export class VirtioRng extends VirtioMmioDevice<Record<string, never>> {
  private readonly stats = { requests: 0, bytes: 0 };

  constructor(
    ctx: VirtioContext,
    private readonly entropy: EntropySource = webCryptoEntropy,
  ) {
    super(ctx, VIRTIO_ID_ENTROPY, 0n, [{ maxSize: 64, limits: { maxChainBytes: MAX_REQUEST } }], 0, 'virtio-rng', 1);
  }

  protected handleChain(_queue: number, chain: DescriptorChain): void {
    const bytes = new Uint8Array(chain.writableBytes);
    this.entropy(bytes);
    const written = this.writeChain(chain, 0, bytes);
    this.stats.requests++;
    this.stats.bytes += written;
    this.complete(chain, written);
  }

  protected saveDevice(): Record<string, never> {
    return {};
  }
  protected loadDevice(): void {}
  protected override deviceMetrics(): Record<string, number> {
    return { ...this.stats };
  }
}
