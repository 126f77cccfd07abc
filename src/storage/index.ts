export { StorageError, type BlockBackend, type StorageErrorCode } from './backend.js';
export {
  openDisk,
  openImageFile,
  createDisk,
  probeFormat,
  type OpenDiskOptions,
  type CreateDiskOptions,
  type DiskFormat,
} from './disk.js';
export { RawImage } from './raw.js';
export { MemoryFile } from './memory-file.js';
export type { ImageFile } from './file.js';
export { Qcow2Image, type CheckReport } from './qcow2/image.js';
export { parseSize, formatSize } from './size.js';
