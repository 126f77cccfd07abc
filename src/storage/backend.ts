/**
 * The one async interface every disk image format implements (raw, qcow2, ...). Devices (virtio-blk) and
 * tools (`typevisor disk`) only ever see this. Offsets and lengths are bytes; all must be validated by the
 * implementation, which rejects out-of-range requests with a StorageError instead of touching anything.
 */
export interface BlockBackend {
  /** Virtual size of the disk in bytes. */
  readonly size: number;
  readonly readOnly: boolean;
  /** Human-readable format name: 'raw', 'qcow2'. */
  readonly format: string;
  read(offset: number, into: Uint8Array): Promise<void>;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Resolves once every completed write, data and metadata, is durable (fsync). */
  flush(): Promise<void>;
  /** Deallocates the range where the format can; reads of it return zeros afterwards. */
  discard(offset: number, length: number): Promise<void>;
  /** Makes the range read as zeros, deallocating where the format can. */
  writeZeroes(offset: number, length: number): Promise<void>;
  /** Host bytes actually allocated by the image (thin provisioning). */
  allocatedBytes(): Promise<number>;
  close(): Promise<void>;
}

export type StorageErrorCode = 'OUT_OF_RANGE' | 'READ_ONLY' | 'NOT_FOUND' | 'BAD_IMAGE' | 'UNSUPPORTED' | 'IO';

export class StorageError extends Error {
  constructor(
    readonly code: StorageErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'StorageError';
  }
}
