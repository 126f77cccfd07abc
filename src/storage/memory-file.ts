import { StorageError } from './backend.js';
import { checkRange, type ImageFile } from './file.js';

/** Default ceiling of a MemoryFile: far above any image a test builds, far below what would hurt the host. */
const DEFAULT_MAX_BYTES = 64 * 2 ** 20;

/**
 * An image file held in memory, for tests and fuzzing: the same positional I/O and the same offset checks as
 * HostFile, without a system call per access. Growth is bounded by `maxBytes` (a write or truncate past it fails
 * with a StorageError, where a host file would have grown sparse); `largestEnd` records the furthest byte any
 * write or truncate asked for, refused or not, so a test can bound what an image tried to do.
 */
export class MemoryFile implements ImageFile {
  private buf: Uint8Array;
  private length: number;
  private closed = false;
  /** The furthest end of any write or truncate requested so far. */
  largestEnd: number;
  syncs = 0;

  constructor(
    contents: Uint8Array,
    readonly readOnly = false,
    readonly path = 'memory',
    private readonly maxBytes = DEFAULT_MAX_BYTES,
  ) {
    // A copy that never shares memory with `contents` (Buffer#slice would return a view of it).
    this.buf = new Uint8Array(contents);
    this.length = contents.length;
    this.largestEnd = contents.length;
  }

  /** The file's bytes now (a copy). */
  contents(): Uint8Array {
    return new Uint8Array(this.buf.subarray(0, this.length));
  }

  async size(): Promise<number> {
    this.checkOpen();
    return this.length;
  }

  async allocatedBytes(): Promise<number> {
    this.checkOpen();
    return this.length;
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.checkOpen();
    checkRange(offset, into.length);
    const end = Math.min(this.length, offset + into.length);
    if (offset < end) into.set(this.buf.subarray(offset, end));
    into.fill(0, Math.max(0, end - offset));
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.checkOpen();
    if (this.readOnly) throw new StorageError('READ_ONLY', `${this.path} is open read-only`);
    checkRange(offset, data.length);
    this.grow(offset + data.length);
    this.buf.set(data, offset);
  }

  async truncate(length: number): Promise<void> {
    this.checkOpen();
    checkRange(length, 0);
    if (length < this.length) this.buf.fill(0, length, this.length);
    else this.grow(length);
    this.length = length;
  }

  async sync(): Promise<void> {
    this.checkOpen();
    this.syncs++;
  }

  async barrier(): Promise<void> {
    this.checkOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private grow(end: number): void {
    this.largestEnd = Math.max(this.largestEnd, end);
    if (end <= this.length) return;
    if (end > this.maxBytes) {
      throw new StorageError('IO', `${this.path}: ${end} bytes would exceed the in-memory file limit of ${this.maxBytes}`);
    }
    if (end > this.buf.length) {
      const bigger = new Uint8Array(Math.min(this.maxBytes, Math.max(end, 2 * this.buf.length)));
      bigger.set(this.buf.subarray(0, this.length));
      this.buf = bigger;
    }
    this.length = end;
  }

  private checkOpen(): void {
    if (this.closed) throw new StorageError('IO', `${this.path} is closed`);
  }
}
