/**
 * A disk backend whose image can be exchanged while the VM runs: a snapshot freezes the current image as a
 * read-only layer and the VM continues on a new overlay over it. virtio-blk keeps talking to this wrapper; the
 * runtime switches the image only while the guest is paused and the device idle, so no request ever sees two
 * images.
 */
import type { BlockBackend } from '../storage/backend.js';

export class SwitchableBackend implements BlockBackend {
  private detachedSize = 0;
  constructor(private innerValue: BlockBackend | null) {}

  private get inner(): BlockBackend {
    if (!this.innerValue) throw new Error('the disk image is detached (a snapshot is being taken)');
    return this.innerValue;
  }

  get size(): number {
    return this.innerValue ? this.innerValue.size : this.detachedSize;
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
    return this.innerValue ? this.innerValue.close() : Promise.resolve();
  }

  /**
   * Flushes and closes the image (clean: no dirty bit, no pending refcount updates), so it can be frozen as a
   * snapshot layer; attach() gives the disk its next image. The guest must be paused and the device idle.
   */
  async detach(): Promise<void> {
    const old = this.inner;
    this.detachedSize = old.size;
    this.innerValue = null;
    if (!old.readOnly) await old.flush();
    await old.close();
  }

  async attach(next: BlockBackend): Promise<void> {
    if (this.innerValue) throw new Error('the disk already has an image');
    if (next.size !== this.detachedSize) {
      await next.close();
      throw new Error(`the new image is ${next.size} bytes, the disk is ${this.detachedSize}`);
    }
    this.innerValue = next;
  }

  /** Makes `next` the image (same virtual size), then flushes and closes the previous one. */
  async switchTo(next: BlockBackend): Promise<void> {
    if (next.size !== this.inner.size) {
      await next.close();
      throw new Error(`the new image is ${next.size} bytes, the disk is ${this.inner.size}`);
    }
    const old = this.inner;
    this.innerValue = next;
    if (!old.readOnly) await old.flush();
    await old.close();
  }
}
