import { StorageError, type BlockBackend } from './backend.js';
import { AsyncMutex } from './mutex.js';
import { HostFile, checkRequest, type ImageFile } from './file.js';

/** Zero-fill granularity for raw discard/write-zeroes. */
const ZERO_CHUNK = 1 << 20;

/**
 * A raw image: the file is the disk. Created sparse (ftruncate). Node has no fallocate(PUNCH_HOLE), so
 * discard and write-zeroes compare each chunk with zeros first and only write the chunks that are not
 * already zero: ranges that were never written stay holes, written ones become zeros (not holes).
 */
export class RawImage implements BlockBackend {
  readonly format = 'raw';
  /** Keeps a zeroing pass from interleaving with writes to the same range. */
  private readonly mutex = new AsyncMutex();
  private closed = false;

  private constructor(
    private readonly file: ImageFile,
    readonly size: number,
    readonly readOnly: boolean,
  ) {}

  static async open(path: string, readOnly: boolean, syncOpen = false): Promise<RawImage> {
    if (syncOpen) {
      const file = HostFile.openSync(path, readOnly);
      try {
        return new RawImage(file, file.sizeSync(), readOnly);
      } catch (err) {
        await file.close();
        throw err;
      }
    }
    return RawImage.openFile(await HostFile.open(path, readOnly));
  }

  /** A raw image over an already open file (a HostFile, or a MemoryFile in tests); takes ownership of it. */
  static async openFile(file: ImageFile): Promise<RawImage> {
    return new RawImage(file, await file.size(), file.readOnly);
  }

  static async create(path: string, size: number): Promise<void> {
    if (!Number.isSafeInteger(size) || size < 0) throw new StorageError('UNSUPPORTED', `invalid size ${size}`);
    const file = await HostFile.create(path);
    try {
      await file.truncate(size);
      await file.sync();
    } finally {
      await file.close();
    }
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.checkOpen();
    checkRequest(this.size, offset, into.length);
    return this.file.read(offset, into);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable();
    checkRequest(this.size, offset, data.length);
    return this.mutex.run(() => this.file.write(offset, data));
  }

  async flush(): Promise<void> {
    this.checkOpen();
    return this.mutex.run(() => this.file.sync());
  }

  async discard(offset: number, length: number): Promise<void> {
    return this.writeZeroes(offset, length);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.checkWritable();
    checkRequest(this.size, offset, length);
    return this.mutex.run(async () => {
      const chunk = new Uint8Array(Math.min(ZERO_CHUNK, length));
      for (let pos = offset; pos < offset + length; pos += chunk.length) {
        const view = chunk.subarray(0, Math.min(chunk.length, offset + length - pos));
        await this.file.read(pos, view);
        if (!isZero(view)) {
          view.fill(0);
          await this.file.write(pos, view);
        }
      }
    });
  }

  /** True when the range is known to read as zeros without reading it (raw: never known). */
  async isZeroRange(): Promise<boolean> {
    return false;
  }

  allocatedBytes(): Promise<number> {
    return this.file.allocatedBytes();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.mutex.run(async () => {
      if (!this.readOnly) await this.file.sync();
    });
    await this.file.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new StorageError('IO', 'disk is closed');
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.readOnly) throw new StorageError('READ_ONLY', 'disk is read-only');
  }
}

export function isZero(buf: Uint8Array): boolean {
  // Compare 8 bytes at a time where alignment allows; this runs over every converted chunk.
  const aligned = buf.byteOffset % 8 === 0 ? Math.floor(buf.length / 8) : 0;
  if (aligned > 0) {
    const words = new Float64Array(buf.buffer, buf.byteOffset, aligned);
    for (let i = 0; i < words.length; i++) if (words[i] !== 0 || Object.is(words[i], -0)) return false;
  }
  for (let i = aligned * 8; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}
