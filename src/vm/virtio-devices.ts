/**
 * Turns a VmConfig into attached virtio devices on a board: one virtio-blk per disk (opened with openDisk),
 * virtio-console, virtio-rng and virtio-balloon as configured, each in a free virtio-mmio slot.
 *
 * Disks stay open across guest reboots: the machine runner builds a new Machine per boot and calls
 * attachVirtioDevices again with the same config object, which reuses the open backends (two handles on one qcow2
 * image would corrupt it). `close()` on the result flushes and closes them for good.
 */
import type { IrqLine, MmioDevice } from '../devices/device.js';
import type { GuestRam } from '../machine/memory.js';
import { VirtioBalloon, type VirtioBalloonOptions } from '../devices/virtio/balloon.js';
import { VirtioBlk } from '../devices/virtio/blk.js';
import { VirtioConsole } from '../devices/virtio/console.js';
import { VirtioRng } from '../devices/virtio/rng.js';
import { VirtioNet } from '../devices/virtio/net.js';
import type { NicCounters } from './protocol.js';
import type { NicLink } from './nic-link.js';
import type { BlockBackend } from '../storage/backend.js';
import { openDisk as openDiskImage } from '../storage/index.js';
import type { DiskConfig, NicConfig, NicRateLimit, VmConfig } from './config.js';
import { SwitchableBackend } from './switchable-backend.js';
import type { RuntimeCounters } from './protocol.js';

/** The guest memory figures of the runtime counters, from the balloon's latest statistics. */
export type GuestMemoryCounters = Pick<
  RuntimeCounters,
  | 'guestStatsUpdates'
  | 'guestTotalBytes'
  | 'guestFreeBytes'
  | 'guestAvailableBytes'
  | 'guestCachesBytes'
  | 'guestMajorFaults'
  | 'guestMinorFaults'
  | 'guestSwapInBytes'
  | 'guestSwapOutBytes'
  | 'guestOomKills'
  | 'balloonTargetBytes'
  | 'balloonDeflateOnOom'
>;

export function guestMemoryCounters(balloon: VirtioBalloon | undefined): GuestMemoryCounters {
  const v = balloon?.stats().values ?? {};
  const n = (k: string): number | null => (typeof v[k] === 'number' ? v[k] : null);
  return {
    guestStatsUpdates: balloon?.stats().updates ?? 0,
    guestTotalBytes: n('totalMemory'),
    guestFreeBytes: n('freeMemory'),
    guestAvailableBytes: n('availableMemory'),
    guestCachesBytes: n('diskCaches'),
    guestMajorFaults: n('majorFaults'),
    guestMinorFaults: n('minorFaults'),
    guestSwapInBytes: n('swapIn'),
    guestSwapOutBytes: n('swapOut'),
    guestOomKills: n('oomKills'),
    balloonTargetBytes: (balloon?.targetPages ?? 0) * 4096,
    balloonDeflateOnOom: balloon?.deflateOnOom ?? false,
  };
}

/** What the board gives each factory (src/machine's VirtioAttachContext satisfies it). */
export interface VirtioSlotContext {
  ram: GuestRam;
  irq: IrqLine;
  name: string;
  wake?: () => void;
}

/** The part of the board this module needs. */
export interface VirtioBoard {
  attachVirtio(factory: (ctx: VirtioSlotContext) => MmioDevice): number;
  /** When present (src/machine's Machine has it), disks are closed once the machine exits other than by reboot. */
  readonly exited?: Promise<{ kind: string }>;
}

export type OpenDiskFn = (path: string, opts: { format: 'raw' | 'qcow2'; readOnly: boolean }) => Promise<BlockBackend>;

export interface AttachOptions {
  /** How disks are opened (tests pass in-memory backends). Default: src/storage's openDisk. */
  openDisk?: OpenDiskFn;
  /** virtio-balloon options (e.g. turning free page reporting off). */
  balloon?: VirtioBalloonOptions;
  /** Host bytes from the guest's virtio-console port (the guest agent's channel). */
  onConsoleOutput?: (bytes: Uint8Array) => void;
  /** One link per config NIC (in order); a NIC without a link is not attached. */
  nicLinks?: NicLink[];
  /** Current limits per NIC (live changes survive a guest reboot); default: the config's. */
  nicRates?: { rx: NicRateLimit | null; tx: NicRateLimit | null }[];
  /** Gets the milliseconds spent waiting for the disks to open (a restore's phases). */
  timing?: { openDisks?: number };
}

export interface AttachedNic {
  config: NicConfig;
  device: VirtioNet;
  slot: number;
}

export interface AttachedDisk {
  config: DiskConfig;
  backend: SwitchableBackend;
  device: VirtioBlk;
  slot: number;
}

export interface VirtioCounters {
  diskReadBytes: number;
  diskWriteBytes: number;
  diskReadOps: number;
  diskWriteOps: number;
  /** Bytes the guest holds in its balloon (device-side count of received pages). */
  balloonBytes: number;
  nics: NicCounters[];
}

export interface AttachedVirtioDevices {
  disks: AttachedDisk[];
  console?: VirtioConsole;
  rng?: VirtioRng;
  balloon?: VirtioBalloon;
  nics: AttachedNic[];
  /** Sends a line to the guest agent over virtio-console; false when there is no console. */
  agentSend(line: string): boolean;
  counters(): VirtioCounters;
  /** Asks the guest for fresh balloon stats every `periodMs`; returns a function that stops it. */
  pollBalloonStats(periodMs: number): () => void;
  /** Waits for in-flight disk requests, flushes and closes every disk. Idempotent. */
  close(): Promise<void>;
}

/** Open backends per config object, so a guest reboot (same config) reuses them. */
const openDisks = new WeakMap<VmConfig, Promise<SwitchableBackend[]>>();

async function openAll(config: VmConfig, open: OpenDiskFn): Promise<SwitchableBackend[]> {
  const opened: SwitchableBackend[] = [];
  try {
    // Wrapped, so a snapshot can move a running disk onto a new overlay (switchable-backend.ts).
    for (const d of config.disks)
      opened.push(new SwitchableBackend(await open(d.path, { format: d.format, readOnly: d.readOnly })));
  } catch (err) {
    await Promise.allSettled(opened.map((b) => b.close()));
    throw err;
  }
  return opened;
}

export async function attachVirtioDevices(
  board: VirtioBoard,
  config: VmConfig,
  options: AttachOptions = {},
): Promise<AttachedVirtioDevices> {
  // Synchronous metadata reads: this is the VM's own thread, and nothing else runs on it while its disks open.
  const open = options.openDisk ?? ((path, opts) => openDiskImage(path, { ...opts, syncOpen: true }));
  const openFrom = performance.now();
  let pending = openDisks.get(config);
  if (!pending) {
    pending = openAll(config, open);
    openDisks.set(config, pending);
    pending.catch(() => openDisks.delete(config));
  }
  const backends = await pending;
  if (options.timing) options.timing.openDisks = performance.now() - openFrom;

  // Linux probes virtio-mmio nodes in device-tree order, which (as on QEMU's virt board) runs from the highest
  // slot address down, while the board fills slots from the lowest. Attaching in reverse makes the guest name
  // devices in config order: the first disk is /dev/vda.
  let balloon: VirtioBalloon | undefined;
  if (config.balloon) board.attachVirtio((ctx) => (balloon = new VirtioBalloon(ctx, options.balloon)));
  let rng: VirtioRng | undefined;
  if (config.rng) board.attachVirtio((ctx) => (rng = new VirtioRng(ctx)));
  let console: VirtioConsole | undefined;
  if (config.virtioConsole) {
    board.attachVirtio((ctx) => (console = new VirtioConsole(ctx, { onOutput: options.onConsoleOutput })));
  }
  const nics: AttachedNic[] = [];
  const nicConfigs = config.nics ?? [];
  for (let i = nicConfigs.length - 1; i >= 0; i--) {
    const link = options.nicLinks?.[i];
    if (!link) continue;
    const nic = nicConfigs[i]!;
    const rates = options.nicRates?.[i] ?? { rx: nic.rx ?? null, tx: nic.tx ?? null };
    let device!: VirtioNet;
    const slot = board.attachVirtio(
      (ctx) =>
        (device = new VirtioNet(ctx, {
          mac: nic.mac,
          onTransmit: (frame, offload) => link.send(frame, offload),
          onTransmitBatchEnd: () => link.flush(),
          rateLimits: rates,
          offload: nic.offload !== false,
        })),
    );
    link.bind((frame, offload) => device.receive(frame, offload));
    nics.unshift({ config: nic, device, slot });
  }
  const disks: AttachedDisk[] = [];
  for (let i = config.disks.length - 1; i >= 0; i--) {
    const d = config.disks[i]!;
    const backend = backends[i]!;
    let device!: VirtioBlk;
    const slot = board.attachVirtio((ctx) => (device = new VirtioBlk(ctx, backend, { serial: d.serial, readOnly: d.readOnly })));
    disks.unshift({ config: d, backend, device, slot });
  }

  let closing: Promise<void> | undefined;
  const attached: AttachedVirtioDevices = {
    disks,
    console,
    rng,
    balloon,
    nics,
    agentSend(line: string): boolean {
      if (!console) return false;
      console.input(line.endsWith('\n') ? line : `${line}\n`);
      return true;
    },
    counters(): VirtioCounters {
      const c: VirtioCounters = {
        diskReadBytes: 0,
        diskWriteBytes: 0,
        diskReadOps: 0,
        diskWriteOps: 0,
        balloonBytes: 0,
        nics: nics.map((n) => {
          const m = n.device.metrics();
          return {
            mac: n.config.mac,
            rxBytes: m.rxBytes ?? 0,
            rxPackets: m.rxPackets ?? 0,
            rxDropped: (m.rxDropped ?? 0) + (m.rxErrors ?? 0),
            txBytes: m.txBytes ?? 0,
            txPackets: m.txPackets ?? 0,
            txDropped: (m.txDropped ?? 0) + (m.txErrors ?? 0),
          };
        }),
      };
      for (const d of disks) {
        const m = d.device.metrics();
        c.diskReadBytes += m.readBytes ?? 0;
        c.diskWriteBytes += m.writeBytes ?? 0;
        c.diskReadOps += m.reads ?? 0;
        c.diskWriteOps += m.writes ?? 0;
      }
      if (balloon) c.balloonBytes = balloon.balloonedPages * 4096;
      return c;
    },
    pollBalloonStats(periodMs: number): () => void {
      if (!balloon) return () => {};
      const b = balloon;
      const timer = setInterval(() => void b.requestStats(), periodMs);
      timer.unref?.();
      return () => clearInterval(timer);
    },
    close(): Promise<void> {
      closing ??= (async () => {
        if (openDisks.get(config) === pending) openDisks.delete(config);
        await Promise.allSettled(disks.map((d) => d.device.whenIdle()));
        const results = await Promise.allSettled(
          backends.map(async (b) => {
            if (!b.readOnly) await b.flush();
            await b.close();
          }),
        );
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      })();
      return closing;
    },
  };
  // A reboot builds a new machine over the same open disks; any other exit is the end of this VM's run.
  void board.exited?.then((exit) => {
    if (exit.kind !== 'reboot') void attached.close().catch(() => {});
  });
  return attached;
}
