/**
 * A disk backend whose image can be exchanged while the VM runs: a snapshot freezes the current image as a
 * read-only layer and the VM continues on a new overlay over it. virtio-blk keeps talking to this wrapper; the
 * runtime switches the image only while the guest is paused and the device idle, so no request ever sees two
 * images.
 */
import type { BlockBackend } from '../storage/backend.js';

export class SwitchableBackend implements BlockBackend {
  constructor(private inner: BlockBackend) {}

  get size(): number {
    return this.inner.size;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get format(): string {
    return this.inner.format;
  }
  read(offset: number, into: Uint8Array): Promise<void> {
    return this.inner.read(offset, into);
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.inner.write(offset, data);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  discard(offset: number, length: number): Promise<void> {
    return this.inner.discard(offset, length);
  }
  writeZeroes(offset: number, length: number): Promise<void> {
    return this.inner.writeZeroes(offset, length);
  }
  allocatedBytes(): Promise<number> {
    return this.inner.allocatedBytes();
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  /** Makes `next` the image (same virtual size), then flushes and closes the previous one. */
  async switchTo(next: BlockBackend): Promise<void> {
    if (next.size !== this.inner.size) {
      await next.close();
      throw new Error(`the new image is ${next.size} bytes, the disk is ${this.inner.size}`);
    }
    const old = this.inner;
    this.inner = next;
    if (!old.readOnly) await old.flush();
    await old.close();
  }
}
