/**
 * virtio 1.2 constants, named as the specification names them (§2.1 status, §4.2.2 MMIO layout, §6 reserved
 * feature bits, §2.7 split virtqueues).
 */

// §4.2.2 MMIO device register layout (offsets into the 0x200-byte window).
export const VIRTIO_MMIO_MAGIC_VALUE = 0x000; // "virt"
export const VIRTIO_MMIO_VERSION = 0x004; // 2 = modern
export const VIRTIO_MMIO_DEVICE_ID = 0x008;
export const VIRTIO_MMIO_VENDOR_ID = 0x00c;
export const VIRTIO_MMIO_DEVICE_FEATURES = 0x010;
export const VIRTIO_MMIO_DEVICE_FEATURES_SEL = 0x014;
export const VIRTIO_MMIO_DRIVER_FEATURES = 0x020;
export const VIRTIO_MMIO_DRIVER_FEATURES_SEL = 0x024;
export const VIRTIO_MMIO_QUEUE_SEL = 0x030;
export const VIRTIO_MMIO_QUEUE_NUM_MAX = 0x034;
export const VIRTIO_MMIO_QUEUE_NUM = 0x038;
export const VIRTIO_MMIO_QUEUE_READY = 0x044;
export const VIRTIO_MMIO_QUEUE_NOTIFY = 0x050;
export const VIRTIO_MMIO_INTERRUPT_STATUS = 0x060;
export const VIRTIO_MMIO_INTERRUPT_ACK = 0x064;
export const VIRTIO_MMIO_STATUS = 0x070;
export const VIRTIO_MMIO_QUEUE_DESC_LOW = 0x080;
export const VIRTIO_MMIO_QUEUE_DESC_HIGH = 0x084;
export const VIRTIO_MMIO_QUEUE_DRIVER_LOW = 0x090; // the available ring
export const VIRTIO_MMIO_QUEUE_DRIVER_HIGH = 0x094;
export const VIRTIO_MMIO_QUEUE_DEVICE_LOW = 0x0a0; // the used ring
export const VIRTIO_MMIO_QUEUE_DEVICE_HIGH = 0x0a4;
export const VIRTIO_MMIO_SHM_SEL = 0x0ac;
export const VIRTIO_MMIO_SHM_LEN_LOW = 0x0b0;
export const VIRTIO_MMIO_SHM_LEN_HIGH = 0x0b4;
export const VIRTIO_MMIO_SHM_BASE_LOW = 0x0b8;
export const VIRTIO_MMIO_SHM_BASE_HIGH = 0x0bc;
export const VIRTIO_MMIO_QUEUE_RESET = 0x0c0;
export const VIRTIO_MMIO_CONFIG_GENERATION = 0x0fc;
export const VIRTIO_MMIO_CONFIG = 0x100;

export const VIRTIO_MMIO_MAGIC = 0x74726976; // little-endian "virt"
export const VIRTIO_MMIO_WINDOW_SIZE = 0x200;
/** Our vendor id: "TYPV" little-endian. Linux ignores it; it only has to be stable. */
export const TYPEVISOR_VENDOR_ID = 0x56505954;

// §4.2.2 InterruptStatus bits.
export const VIRTIO_MMIO_INT_VRING = 1 << 0; // a used buffer was added
export const VIRTIO_MMIO_INT_CONFIG = 1 << 1; // the configuration changed (or the device needs a reset)

// §2.1 device status field.
export const VIRTIO_CONFIG_S_ACKNOWLEDGE = 1;
export const VIRTIO_CONFIG_S_DRIVER = 2;
export const VIRTIO_CONFIG_S_DRIVER_OK = 4;
export const VIRTIO_CONFIG_S_FEATURES_OK = 8;
export const VIRTIO_CONFIG_S_NEEDS_RESET = 64;
export const VIRTIO_CONFIG_S_FAILED = 128;

// §6 reserved feature bits (bit numbers).
export const VIRTIO_F_INDIRECT_DESC = 28;
export const VIRTIO_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;

// §2.7.5 split virtqueue descriptor flags.
export const VIRTQ_DESC_F_NEXT = 1; // the chain continues via `next`
export const VIRTQ_DESC_F_WRITE = 2; // device-writable (otherwise device-readable)
export const VIRTQ_DESC_F_INDIRECT = 4; // the buffer holds a table of descriptors
// §2.7.6 / §2.7.8 ring flags.
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
export const VIRTQ_USED_F_NO_NOTIFY = 1;

export const VIRTQ_DESC_SIZE = 16;
/** §2.7: "The maximum Queue Size value is 32768." */
export const VIRTQ_MAX_SIZE = 32768;

/** Feature bit number → mask, as a bigint (features are 64-bit; negotiation is a rare path). */
export function bit(n: number): bigint {
  return 1n << BigInt(n);
}
export function hasFeature(features: bigint, n: number): boolean {
  return (features & bit(n)) !== 0n;
}

/** vring_need_event (§2.7.10): should the side that wrote `newIdx` (from `oldIdx`) notify, given the peer's `eventIdx`? */
export function vringNeedEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}
