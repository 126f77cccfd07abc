import {
  close as closeCb,
  fstat as fstatCb,
  fstatSync,
  fsync as fsyncCb,
  ftruncate as ftruncateCb,
  open as openCb,
  openSync,
  read as readCb,
  readSync,
  write as writeCb,
} from 'node:fs';
import { promisify } from 'node:util';
import { StorageError } from './backend.js';
import { openablePath } from './path-alias.js';

const openFd = promisify(openCb);
const closeFd = promisify(closeCb);
const fstatFd = promisify(fstatCb);
const fsyncFd = promisify(fsyncCb);
const ftruncateFd = promisify(ftruncateCb);
const readFd = promisify(readCb);
const writeFd = promisify(writeCb);

/**
 * Positional I/O on an image's bytes: what RawImage and Qcow2Image need from a file. HostFile is the real one;
 * MemoryFile (memory-file.ts) holds the bytes in memory for tests and fuzzing, behind the same checks.
 */
export interface ImageFile {
  readonly path: string;
  readonly readOnly: boolean;
  size(): Promise<number>;
  allocatedBytes(): Promise<number>;
  /** Reads exactly into.length bytes at offset; bytes past the end of the file read as zeros. */
  read(offset: number, into: Uint8Array): Promise<void>;
  write(offset: number, data: Uint8Array): Promise<void>;
  truncate(length: number): Promise<void>;
  /** Data and metadata durable. */
  sync(): Promise<void>;
  /** An ordering barrier: a sync only if something was written since the last one. */
  barrier(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A positional-I/O wrapper over one host file. Every read and write is checked against `maxOffset`
 * (a hard ceiling far above any sane image) and fails with a StorageError rather than a raw errno, so a
 * hostile image's offsets can never reach Node as out-of-range numbers.
 *
 * I/O is asynchronous (the thread pool), except where a caller asks for the synchronous forms (openSync,
 * sizeSync, readSync): a VM's own thread opening its disks' metadata, where one trip through a loaded host's
 * thread pool per read costs far more than the read (a backing chain's open: ~0.5 ms sync, 6-100 ms async
 * on this shared machine under load).
 */
export class HostFile implements ImageFile {
  /** Set by every write, cleared by sync(): lets barriers skip an fsync when nothing changed. */
  private unsynced = false;
  private closed = false;
  /** Operations on the descriptor not finished yet: close() waits for them, as FileHandle.close() does. */
  private readonly inflight = new Set<Promise<unknown>>();
  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly readOnly: boolean,
  ) {}

  static async open(path: string, readOnly: boolean): Promise<HostFile> {
    try {
      return new HostFile(path, await openFd(openablePath(path), readOnly ? 'r' : 'r+'), readOnly);
    } catch (err) {
      throw ioError(err, `cannot open ${path}`);
    }
  }

  /** open(), on the calling thread. */
  static openSync(path: string, readOnly: boolean): HostFile {
    try {
      return new HostFile(path, openSync(openablePath(path), readOnly ? 'r' : 'r+'), readOnly);
    } catch (err) {
      throw ioError(err, `cannot open ${path}`);
    }
  }

  /** Creates a new, empty file for reading and writing; an existing file is an error, never overwritten. */
  static async create(path: string): Promise<HostFile> {
    try {
      return new HostFile(path, await openFd(openablePath(path), 'wx+'), false);
    } catch (err) {
      throw ioError(err, `cannot create ${path}`);
    }
  }

  async size(): Promise<number> {
    this.checkOpen();
    return (await this.track(fstatFd(this.fd))).size;
  }

  sizeSync(): number {
    this.checkOpen();
    return fstatSync(this.fd).size;
  }

  async allocatedBytes(): Promise<number> {
    this.checkOpen();
    return (await this.track(fstatFd(this.fd))).blocks * 512;
  }

  /** Reads exactly into.length bytes at offset; bytes past the end of the file read as zeros. */
  async read(offset: number, into: Uint8Array): Promise<void> {
    checkRange(offset, into.length);
    this.checkOpen();
    let done = 0;
    while (done < into.length) {
      let n: number;
      this.checkOpen();
      try {
        ({ bytesRead: n } = await this.track(readFd(this.fd, into, done, into.length - done, offset + done)));
      } catch (err) {
        throw ioError(err, `read failed on ${this.path}`);
      }
      if (n === 0) {
        into.fill(0, done);
        return;
      }
      done += n;
    }
  }

  /** read(), on the calling thread. */
  readSync(offset: number, into: Uint8Array): void {
    checkRange(offset, into.length);
    this.checkOpen();
    let done = 0;
    while (done < into.length) {
      let n: number;
      try {
        n = readSync(this.fd, into, done, into.length - done, offset + done);
      } catch (err) {
        throw ioError(err, `read failed on ${this.path}`);
      }
      if (n === 0) {
        into.fill(0, done);
        return;
      }
      done += n;
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw new StorageError('READ_ONLY', `${this.path} is open read-only`);
    checkRange(offset, data.length);
    this.checkOpen();
    this.unsynced = true;
    let done = 0;
    while (done < data.length) {
      this.checkOpen();
      try {
        const { bytesWritten } = await this.track(writeFd(this.fd, data, done, data.length - done, offset + done));
        done += bytesWritten;
      } catch (err) {
        throw ioError(err, `write failed on ${this.path}`);
      }
    }
  }

  async truncate(length: number): Promise<void> {
    checkRange(length, 0);
    this.unsynced = true;
    try {
      this.checkOpen();
      await this.track(ftruncateFd(this.fd, length));
    } catch (err) {
      throw ioError(err, `truncate failed on ${this.path}`);
    }
  }

  /** fsync: data and metadata durable. */
  async sync(): Promise<void> {
    if (this.readOnly) return;
    this.unsynced = false;
    try {
      this.checkOpen();
      await this.track(fsyncFd(this.fd));
    } catch (err) {
      this.unsynced = true;
      throw ioError(err, `fsync failed on ${this.path}`);
    }
  }

  /** An ordering barrier: fsync only if something was written since the last one. */
  async barrier(): Promise<void> {
    if (this.unsynced) await this.sync();
  }

  /** Closes the file; later calls do nothing (the descriptor's number may belong to another file by then). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.inflight]);
    await closeFd(this.fd);
  }

  private track<T>(op: Promise<T>): Promise<T> {
    this.inflight.add(op);
    const done = (): void => void this.inflight.delete(op);
    op.then(done, done);
    return op;
  }

  private checkOpen(): void {
    if (this.closed) throw new StorageError('IO', `${this.path} is closed`);
  }
}

/** Highest byte offset we will ever touch in an image file (2^53, JS's exact-integer limit). */
export const MAX_FILE_OFFSET = Number.MAX_SAFE_INTEGER;

export function checkRange(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > MAX_FILE_OFFSET) {
    throw new StorageError('OUT_OF_RANGE', `host file offset ${offset}+${length} is out of range`);
  }
}

export function ioError(err: unknown, what: string): StorageError {
  if (err instanceof StorageError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new StorageError('NOT_FOUND', `${what}: no such file`);
  if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM') {
    return new StorageError('READ_ONLY', `${what}: ${code}`);
  }
  return new StorageError('IO', `${what}: ${err instanceof Error ? err.message : String(err)}`);
}

/** Validates a guest request against the virtual size; shared by every backend. */
export function checkRequest(size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new StorageError('OUT_OF_RANGE', `request ${offset}+${length} is outside the disk (size ${size})`);
  }
}
