export * from './regs.js';
export * from './virtqueue.js';
export * from './mmio.js';
export { VirtioBlk, VIRTIO_ID_BLOCK, type VirtioBlkOptions } from './blk.js';
export { VirtioConsole, VIRTIO_ID_CONSOLE, type VirtioConsoleOptions } from './console.js';
export { VirtioRng, VIRTIO_ID_ENTROPY, webCryptoEntropy, type EntropySource } from './rng.js';
export { VirtioBalloon, VIRTIO_ID_BALLOON, type BalloonStats, type VirtioBalloonOptions } from './balloon.js';
export {
  VirtioNet,
  VIRTIO_ID_NET,
  parseMac,
  formatMac,
  randomMac,
  type NetRateLimits,
  type TxFrameErrorKind,
  type VirtioNetCounters,
  type VirtioNetOptions,
} from './net.js';
