/** The QEMU riscv `virt` memory map (design.md §1), which firmware and kernels built for virt expect. */
export const CLINT_BASE = 0x0200_0000;
export const CLINT_SIZE = 0x1_0000;
export const PLIC_BASE = 0x0c00_0000;
export const PLIC_SIZE = 0x60_0000;
export const UART0_BASE = 0x1000_0000;
export const UART0_SIZE = 0x100;
export const UART0_IRQ = 10;
export const TEST_BASE = 0x10_0000; // sifive,test syscon
export const TEST_SIZE = 0x1000;
export const RTC_BASE = 0x10_1000;
export const RTC_SIZE = 0x1000;
export const RTC_IRQ = 11;
export const VIRTIO_BASE = 0x1000_1000;
export const VIRTIO_STRIDE = 0x1000;
export const VIRTIO_COUNT = 8;
export const VIRTIO_IRQ_FIRST = 1; // slot i uses irq 1 + i
export const DRAM_BASE = 0x8000_0000;
/** mtime frequency; also the device tree's timebase-frequency. */
export const TIMEBASE_HZ = 10_000_000;
/** Where a kernel goes when OpenSBI sits at DRAM_BASE (fw_jump's FW_JUMP_ADDR on virt). */
export const KERNEL_OFFSET_WITH_FIRMWARE = 0x20_0000;
export const PLIC_NUM_SOURCES = 96; // source ids 1..95
export const UART_CLOCK_HZ = 3_686_400;
