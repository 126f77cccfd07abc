/**
 * The host layer: the VM registry, the lifecycle of every VM, console fan-out and monitoring. It receives typed
 * actions (actions.ts) and drives VMs only through an Engine. Every state change goes through lifecycle.ts and is
 * persisted atomically before the action reports success.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, rmSync, statSync } from 'node:fs';
import { cpus, freemem, hostname, loadavg, totalmem } from 'node:os';
import { basename, isAbsolute, join, normalize } from 'node:path';
import type {
  SnapshotOutcome,
  SnapshotView,
  StateOutcome,
  ActionOutcome,
  ConsoleSession,
  ConsoleViewer,
  CreateVmSpec,
  HostAction,
  HostChannel,
  HostInfo,
  HostResult,
  UpdateVmSpec,
  VmAction,
  VmView,
} from './actions.js';
import { ConsoleLog } from './console-log.js';
import { createDiskFile, DiskCreateError } from './disks.js';
import type { Engine, EngineVm, VmExit, VmStats } from './engine.js';
import { HostError } from './errors.js';
import { isValidVmName, type HomeLayout } from './home.js';
import { resolveImage, type GuestImage } from './images.js';
import { isActive, nextState, TransitionError, VM_STATES, type LifecycleEvent, type VmState } from './lifecycle.js';
import { Registry, RECORD_SCHEMA, type VmRecord } from './registry.js';
import { defaultVmConfig, validateVmConfig, type DiskConfig, type VmConfig } from '../vm/config.js';
import type { StateFileInfo } from '../vm/protocol.js';
import { backingOf, SnapshotStore, SNAPSHOT_FORMAT, SNAPSHOT_STATE_FILE, type SnapshotMeta } from './snapshot-store.js';
import { cloneIdentity, guestIdentity, identityRequest } from './clone-identity.js';
import { completeSave, copyDisk, prepareSaveDir, readSaveManifest, SAVE_FORMAT, SAVE_VERSION, STATE_FILE } from './snapshots.js';

export interface HypervisorOptions {
  home: HomeLayout;
  engine: Engine;
  /** How long a graceful shutdown waits for the guest before forcing (overridable per request). */
  shutdownTimeoutMs?: number;
  /** Console log size before rotation. */
  consoleLogBytes?: number;
  log?: (line: string) => void;
}

interface LiveVm {
  rec: VmRecord;
  vm: EngineVm | undefined;
  log: ConsoleLog;
  viewers: Set<ConsoleViewer>;
  /** Serialises user actions on this VM. */
  lock: Promise<unknown>;
  /** Woken on every state change (graceful shutdown waits on it). */
  stateWaiters: Set<() => void>;
  lastStats: VmStats | null;
}

const MIB = 1024 * 1024;
const VERSION = '0.1.0';

export class Hypervisor implements HostChannel {
  readonly registry: Registry;
  private readonly vms = new Map<string, LiveVm>();
  /** Names being created right now (their folder may not exist yet). */
  private readonly creating = new Set<string>();
  private readonly startedAt = Date.now();
  private readonly log: (line: string) => void;
  private closed = false;

  constructor(private readonly opts: HypervisorOptions) {
    this.registry = new Registry(opts.home.vmsDir);
    this.log = opts.log ?? (() => {});
  }

  /** Loads the registry; VMs that were live when the daemon died are stopped, or started when autostart. */
  async init(): Promise<void> {
    this.registry.sweep();
    for (const rec of this.registry.loadAll((err) => this.log(`skipping VM: ${err.message}`))) {
      const live = this.track(rec);
      if (isActive(rec.state)) {
        this.setState(live, 'stopped', 'the daemon exited while the VM was running');
      }
    }
    // Snapshot operations cut short by a crash leave partial folders, .next overlays or unreferenced layers.
    const roots = this.allDiskPaths();
    for (const live of this.vms.values()) {
      try {
        this.store(live).sweep(live.rec.config.disks, roots);
      } catch (err) {
        this.log(`${live.rec.name}: snapshot sweep failed: ${(err as Error).message}`);
      }
    }
    for (const live of this.vms.values()) {
      if (live.rec.autostart) {
        try {
          await this.withLock(live, () => this.doStart(live));
          this.log(`autostarted ${live.rec.name}`);
        } catch (err) {
          this.log(`autostart of ${live.rec.name} failed: ${(err as Error).message}`);
        }
      }
    }
  }

  /** Stops every VM (daemon exit). Records say stopped so a restart does not mistake them for crashed. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      [...this.vms.values()].map(async (live) => {
        if (live.vm) {
          const vm = live.vm;
          live.vm = undefined;
          await vm.stop().catch(() => {});
          if (isActive(live.rec.state)) this.setState(live, 'stopped', 'the daemon stopped');
        }
        live.log.flush();
      }),
    );
  }

  send<A extends HostAction>(action: A): Promise<HostResult<A>> {
    return this.dispatch(action) as Promise<HostResult<A>>;
  }

  private async dispatch(action: HostAction): Promise<unknown> {
    switch (action.type) {
      case 'list':
        return [...this.vms.values()].map((l) => this.view(l, null));
      case 'get': {
        const live = this.find(action.name);
        return this.view(live, action.withStats ? await this.sampleStats(live) : null);
      }
      case 'create':
        return this.create(action.spec);
      case 'update':
        return this.update(action.name, action.patch);
      case 'delete':
        return this.remove(action.name, action.force);
      case 'action':
        return this.act(action.name, action.action, action.timeoutMs);
      case 'console-log':
        return this.find(action.name).log.read();
      case 'console-attach':
        return this.attach(action.name, action.viewer);
      case 'host-info':
        return this.hostInfo();
      case 'stats-all':
        return Promise.all([...this.vms.values()].map(async (l) => this.view(l, await this.sampleStats(l))));
      case 'save':
        return this.save(action.name, action.path, action.stop);
      case 'restore':
        return this.restoreSaved(action.path, action.newName);
      case 'snapshot-create':
        return this.snapshotCreate(action.name, action.snapshot, action.diskOnly);
      case 'snapshot-list':
        return this.snapshotList(action.name);
      case 'snapshot-restore':
        return this.snapshotRestore(action.name, action.snapshot);
      case 'snapshot-delete':
        return this.snapshotDelete(action.name, action.snapshot);
      case 'clone':
        return this.clone(action.source, action.target, action.running);
      default: {
        const never: never = action;
        throw new HostError('INVALID_REQUEST', `unknown action ${JSON.stringify(never)}`);
      }
    }
  }

  // ---- create / update / delete ----------------------------------------------------------------------------

  private async create(spec: CreateVmSpec): Promise<VmView> {
    if (!isValidVmName(spec.name))
      throw new HostError('INVALID_NAME', `VM name ${JSON.stringify(spec.name)} must match [a-z0-9][a-z0-9-]*`);
    if (this.vms.has(spec.name) || this.creating.has(spec.name) || this.registry.exists(spec.name)) {
      throw new HostError('VM_EXISTS', `a VM named '${spec.name}' already exists`);
    }
    this.creating.add(spec.name);
    try {
      // Everything is checked before anything is written, so a refused create leaves nothing on disk.
      const imageName = spec.image ?? (spec.kernel ? undefined : 'default');
      const image = imageName ? await resolveImage(imageName, this.opts.home.imagesDir) : undefined;
      const backings = new Map<string, GuestImage>();
      for (const d of spec.disks) {
        if (d.backing && !backings.has(d.backing))
          backings.set(d.backing, await resolveImage(d.backing, this.opts.home.imagesDir));
        if (d.backing && d.format !== 'qcow2') throw new HostError('INVALID_CONFIG', 'a disk with a backing image must be qcow2');
        if (d.backing && !backings.get(d.backing)!.rootfs)
          throw new HostError('INVALID_CONFIG', `image '${d.backing}' has no root filesystem to back a disk`);
        if (!d.backing && !d.sizeMiB) throw new HostError('INVALID_CONFIG', 'a disk without a backing image needs sizeMiB');
      }
      for (const [what, p] of [
        ['kernel', spec.kernel],
        ['initrd', spec.initrd],
      ] as const)
        if (p !== undefined) checkHostFile(what, p);
      if (spec.firmware !== 'builtin' && spec.firmware !== 'none') checkHostFile('firmware', spec.firmware);

      const rootFromDisk = !!(image?.rootfs && spec.rootDisk);
      const config: VmConfig = defaultVmConfig({
        name: spec.name,
        cpus: spec.vcpus,
        memoryMiB: spec.memoryMiB,
        kernel: spec.kernel ?? image?.kernel,
        // An image boots from its root filesystem overlay when it has one, else from its initrd.
        initrd: spec.initrd ?? (spec.kernel || rootFromDisk ? undefined : image?.initrd),
        append: spec.cmdline ?? (spec.kernel ? undefined : rootFromDisk ? image?.rootCmdline : image?.cmdline),
        firmware:
          spec.firmware === 'builtin'
            ? { kind: 'builtin' }
            : spec.firmware === 'none'
              ? { kind: 'none' }
              : { kind: 'file', path: spec.firmware },
        disks: [],
        rng: spec.rng,
        balloon: spec.balloon,
        virtioConsole: spec.virtioConsole,
      });
      const plannedDisks = (rootFromDisk ? 1 : 0) + spec.disks.length;
      const problems = validateVmConfig({
        ...config,
        disks: new Array<DiskConfig>(plannedDisks).fill({ path: '', format: 'raw', readOnly: false }),
      });
      if (problems.length) throw new HostError('INVALID_CONFIG', problems.join('; '));

      const dir = this.registry.createDir(spec.name);
      try {
        const disks: DiskConfig[] = [];
        if (image?.rootfs && rootFromDisk) {
          const path = join(dir, 'root.qcow2');
          await createDiskFile({ path, format: 'qcow2', backingFile: image.rootfs, backingFormat: image.rootfsFormat });
          disks.push({ path, format: 'qcow2', readOnly: false, serial: 'root' });
        }
        for (const [i, d] of spec.disks.entries()) {
          const path = join(dir, `disk${i + 1}.${d.format}`);
          const backing = d.backing ? backings.get(d.backing) : undefined;
          await createDiskFile({
            path,
            format: d.format,
            sizeBytes: d.sizeMiB ? d.sizeMiB * MIB : undefined,
            backingFile: backing?.rootfs,
            backingFormat: backing?.rootfsFormat,
          });
          disks.push({ path, format: d.format, readOnly: false, serial: `disk${i + 1}` });
        }
        config.disks = disks;
        const now = new Date().toISOString();
        const rec: VmRecord = {
          schema: RECORD_SCHEMA,
          name: spec.name,
          uuid: randomUUID(),
          createdAt: now,
          updatedAt: now,
          state: 'defined',
          autostart: spec.autostart,
          image: image?.name,
          bootMarker: image?.bootMarker,
          config,
        };
        this.registry.save(rec);
        const live = this.track(rec);
        this.log(`created ${spec.name}`);
        return this.view(live, null);
      } catch (err) {
        this.registry.remove(spec.name);
        if (err instanceof HostError) throw err;
        if (err instanceof DiskCreateError) throw new HostError('STORAGE_ERROR', err.message);
        throw new HostError('STORAGE_ERROR', `creating the VM's files failed: ${(err as Error).message}`);
      }
    } finally {
      this.creating.delete(spec.name);
    }
  }

  private update(name: string, patch: UpdateVmSpec): Promise<VmView> {
    const live = this.find(name);
    return this.withLock(live, async () => {
      const touchesMachine = patch.vcpus !== undefined || patch.memoryMiB !== undefined || patch.cmdline !== undefined;
      if (touchesMachine) this.check(live, 'update');
      if (patch.balloonTargetMiB !== undefined) {
        if (!live.vm)
          throw new HostError('INVALID_STATE', `'${name}' is ${live.rec.state}; the balloon target applies to a running VM`);
        if (patch.balloonTargetMiB >= live.rec.config.memoryMiB)
          throw new HostError('INVALID_CONFIG', 'the balloon target must be below the VM memory');
        const bytes = patch.balloonTargetMiB * MIB;
        await this.engineCall(live, (vm) => vm.setBalloonTarget(bytes));
      }
      const config: VmConfig = {
        ...live.rec.config,
        cpus: patch.vcpus ?? live.rec.config.cpus,
        memoryMiB: patch.memoryMiB ?? live.rec.config.memoryMiB,
        append: patch.cmdline ?? live.rec.config.append,
      };
      const problems = validateVmConfig(config);
      if (problems.length) throw new HostError('INVALID_CONFIG', problems.join('; '));
      live.rec = { ...live.rec, config, autostart: patch.autostart ?? live.rec.autostart, updatedAt: new Date().toISOString() };
      this.registry.save(live.rec);
      return this.view(live, null);
    });
  }

  private async remove(name: string, force: boolean): Promise<{ deleted: string }> {
    const live = this.find(name);
    return this.withLock(live, async () => {
      if (!force) this.check(live, 'delete');
      const dependents = this.dependentsOf(name);
      if (dependents.length)
        throw new HostError(
          'INVALID_STATE',
          `'${name}' holds the disk layers of its linked clones ${dependents.join(', ')}; delete them first`,
        );
      if (live.vm) {
        const vm = live.vm;
        live.vm = undefined;
        await vm.stop();
      }
      this.vms.delete(name);
      live.log.flush();
      for (const waiter of live.stateWaiters) waiter();
      this.registry.remove(name);
      this.log(`deleted ${name}`);
      return { deleted: name };
    });
  }

  // ---- lifecycle actions ------------------------------------------------------------------------------------

  private async act(name: string, action: VmAction, timeoutMs?: number): Promise<ActionOutcome> {
    const live = this.find(name);
    switch (action) {
      case 'start':
        await this.withLock(live, () => this.doStart(live));
        return { vm: this.view(live, null) };
      case 'pause':
        await this.withLock(live, async () => {
          this.check(live, 'pause');
          await this.engineCall(live, (vm) => vm.pause());
          this.setState(live, 'paused');
        });
        return { vm: this.view(live, null) };
      case 'resume':
        await this.withLock(live, async () => {
          this.check(live, 'resume');
          await this.engineCall(live, (vm) => vm.resume());
          this.setState(live, 'running');
        });
        return { vm: this.view(live, null) };
      case 'stop':
        await this.withLock(live, () => this.doStop(live, 'stopped by request'));
        return { vm: this.view(live, null) };
      case 'reboot':
        await this.withLock(live, async () => {
          this.check(live, 'reboot');
          this.setState(live, 'rebooting');
          try {
            await this.engineCall(live, (vm) => vm.reboot());
          } catch (err) {
            if (live.rec.state === 'rebooting') await this.doStop(live, `reboot failed: ${(err as Error).message}`, 'crashed');
            throw err;
          }
          if (live.rec.state === 'rebooting') this.setState(live, 'running');
        });
        return { vm: this.view(live, null) };
      case 'shutdown':
        return this.shutdown(live, timeoutMs ?? this.opts.shutdownTimeoutMs ?? 30_000);
    }
  }

  /** Graceful: ask the guest agent, wait for the guest to power off, force after the timeout. */
  private async shutdown(live: LiveVm, timeoutMs: number): Promise<ActionOutcome> {
    let asked = false;
    await this.withLock(live, async () => {
      this.check(live, 'shutdown');
      try {
        await live.vm!.requestShutdown();
        asked = true;
      } catch (err) {
        this.log(`${live.rec.name}: graceful shutdown unavailable (${(err as Error).message}); forcing`);
      }
    });
    if (asked) await this.waitForState(live, (s) => !isActive(s), timeoutMs);
    let forced = false;
    if (isActive(live.rec.state) && this.vms.get(live.rec.name) === live) {
      forced = true;
      await this.withLock(live, async () => {
        if (isActive(live.rec.state)) await this.doStop(live, 'the guest did not power off in time; stopped by force');
      });
    }
    return { vm: this.view(live, null), forced };
  }

  // ---- save / restore (files in snapshots.ts) ---------------------------------------------------------------

  private save(name: string, path: string, stop: boolean): Promise<StateOutcome> {
    const live = this.find(name);
    return this.withLock(live, async () => {
      const t0 = performance.now();
      if (live.rec.state !== 'running' && live.rec.state !== 'paused')
        throw new HostError('INVALID_STATE', `'${name}' is ${live.rec.state}; only a running or paused VM can be saved`);
      const vm = live.vm;
      if (!vm?.saveState) throw new HostError('ENGINE_ERROR', `the ${this.opts.engine.name} engine cannot save VMs`);
      const tmp = prepareSaveDir(path);
      const wasRunning = live.rec.state === 'running';
      try {
        if (wasRunning) await this.engineCall(live, (v) => v.pause());
        let info!: StateFileInfo;
        await this.engineCall(live, async (v) => void (info = await v.saveState!(join(tmp, STATE_FILE))));
        completeSave(
          tmp,
          path,
          {
            format: SAVE_FORMAT,
            version: SAVE_VERSION,
            name,
            savedAt: new Date().toISOString(),
            image: live.rec.image,
            bootMarker: live.rec.bootMarker,
            state: STATE_FILE,
          },
          live.rec.config,
        );
        if (stop) await this.doStop(live, 'saved and stopped');
        else if (wasRunning) await this.engineCall(live, (v) => v.resume());
        return {
          vm: this.view(live, null),
          path,
          stateBytes: info.bytes,
          ramChunks: info.ramChunks,
          workerMs: info.ms,
          totalMs: performance.now() - t0,
        };
      } catch (err) {
        rmSync(tmp, { recursive: true, force: true });
        if (wasRunning && live.vm && live.rec.state === 'running') await live.vm.resume().catch(() => {});
        if (err instanceof HostError) throw err;
        throw new HostError('STORAGE_ERROR', `saving '${name}' failed: ${(err as Error).message}`);
      }
    });
  }

  private async restoreSaved(path: string, newName?: string): Promise<StateOutcome> {
    const t0 = performance.now();
    const manifest = readSaveManifest(path);
    const name = newName ?? manifest.name;
    if (!isValidVmName(name))
      throw new HostError('INVALID_NAME', `VM name ${JSON.stringify(name)} must match [a-z0-9][a-z0-9-]*`);
    if (this.vms.has(name) || this.creating.has(name) || this.registry.exists(name))
      throw new HostError('VM_EXISTS', `a VM named '${name}' already exists`);
    this.creating.add(name);
    let live: LiveVm;
    try {
      const dir = this.registry.createDir(name);
      try {
        const disks = manifest.config.disks.map((d) => {
          const target = join(dir, d.path);
          copyDisk(join(path, d.path), target);
          return { ...d, path: target };
        });
        const now = new Date().toISOString();
        const rec: VmRecord = {
          schema: RECORD_SCHEMA,
          name,
          uuid: randomUUID(),
          createdAt: now,
          updatedAt: now,
          state: 'defined',
          autostart: false,
          ...(manifest.image ? { image: manifest.image } : {}),
          ...(manifest.bootMarker ? { bootMarker: manifest.bootMarker } : {}),
          config: { ...manifest.config, name, disks },
        };
        this.registry.save(rec);
        live = this.track(rec);
      } catch (err) {
        this.registry.remove(name);
        throw new HostError('STORAGE_ERROR', `restoring ${path} failed: ${(err as Error).message}`);
      }
    } finally {
      this.creating.delete(name);
    }
    // A file from elsewhere is checked whole (every RAM chunk's checksum) before the guest runs: no lazy RAM.
    let info: StateFileInfo | void;
    try {
      info = await this.withLock(live, () => this.doStart(live, { path: join(path, manifest.state), lazyRam: false }));
    } catch (err) {
      // A refused restore leaves no VM behind.
      this.vms.delete(name);
      this.registry.remove(name);
      throw err;
    }
    this.log(`restored ${name} from ${path}`);
    return {
      vm: this.view(live, null),
      path,
      stateBytes: info!.bytes,
      ramChunks: info!.ramChunks,
      workerMs: info!.ms,
      totalMs: performance.now() - t0,
    };
  }

  // ---- snapshots and clones (files in snapshot-store.ts) -----------------------------------------------------

  private store(live: LiveVm): SnapshotStore {
    return new SnapshotStore(this.registry.vmDir(live.rec.name));
  }

  private snapshotView(store: SnapshotStore, m: SnapshotMeta, current = store.current()): SnapshotView {
    return {
      name: m.name,
      parent: m.parent,
      createdAt: m.createdAt,
      vmState: m.vmState,
      hasState: m.state !== null,
      stateBytes: m.stateBytes,
      current: current === m.name,
    };
  }

  private snapshotList(name: string): SnapshotView[] {
    const live = this.find(name);
    const store = this.store(live);
    const current = store.current();
    return store.list().map((m) => this.snapshotView(store, m, current));
  }

  /**
   * Freezes the VM's disks as layers and moves it onto new overlays; with `withState` (a live VM) its machine state
   * is saved first into `tmp`. The guest stays paused throughout and is resumed by the caller.
   */
  private async freezeVm(
    live: LiveVm,
    store: SnapshotStore,
    tmp: string,
    withState: boolean,
  ): Promise<{ layers: (string | null)[]; info?: StateFileInfo }> {
    let info: StateFileInfo | undefined;
    if (withState) {
      if (!live.vm?.saveState) throw new HostError('ENGINE_ERROR', `the ${this.opts.engine.name} engine cannot save VMs`);
      await this.engineCall(live, async (v) => void (info = await v.saveState!(join(tmp, SNAPSHOT_STATE_FILE))));
    }
    const disks = live.rec.config.disks;
    const writable = disks.map((d) => (d.readOnly ? null : d.path));
    // The worker closes each image cleanly before it is frozen: a layer never carries a dirty bit or leaks.
    if (live.vm) {
      if (!live.vm.switchDisks) throw new HostError('ENGINE_ERROR', `the ${this.opts.engine.name} engine cannot switch disks`);
      await this.engineCall(live, (v) => v.switchDisks!(writable, 'detach'));
    }
    const { layers, overlays } = await store.freezeDisks(disks);
    store.switchOverlays(disks, overlays, layers);
    if (live.vm) await this.engineCall(live, (v) => v.switchDisks!(writable, 'attach'));
    return { layers, info };
  }

  private snapshotCreate(name: string, snapshot: string | undefined, diskOnly: boolean): Promise<SnapshotOutcome> {
    const live = this.find(name);
    return this.withLock(live, async () => {
      const t0 = performance.now();
      const state = live.rec.state;
      if (state !== 'running' && state !== 'paused' && state !== 'stopped' && state !== 'defined' && state !== 'crashed')
        throw new HostError('INVALID_STATE', `'${name}' is ${state}; wait until it is running, paused or stopped`);
      const store = this.store(live);
      store.sweep(live.rec.config.disks, this.allDiskPaths());
      const snapName =
        snapshot ?? `snap-${new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15).toLowerCase()}`;
      const tmp = store.begin(snapName, live.rec.config.disks);
      const isLive = !!live.vm && (state === 'running' || state === 'paused');
      const withState = isLive && !diskOnly;
      const parent = store.current();
      try {
        if (isLive && state === 'running') await this.engineCall(live, (v) => v.pause());
        const { layers, info } = await this.freezeVm(live, store, tmp, withState);
        const meta: SnapshotMeta = {
          format: SNAPSHOT_FORMAT,
          version: 1,
          name: snapName,
          parent,
          createdAt: new Date().toISOString(),
          vmState: isLive ? (state as 'running' | 'paused') : 'stopped',
          layers,
          state: withState ? SNAPSHOT_STATE_FILE : null,
          stateBytes: info?.bytes ?? 0,
        };
        store.finish(tmp, meta);
        if (isLive && state === 'running') await this.engineCall(live, (v) => v.resume());
        this.log(`${name}: snapshot ${snapName} created`);
        return {
          vm: this.view(live, null),
          snapshot: this.snapshotView(store, meta),
          totalMs: performance.now() - t0,
          workerMs: info?.ms,
        };
      } catch (err) {
        rmSync(tmp, { recursive: true, force: true });
        if (isLive && state === 'running' && live.vm && live.rec.state === 'running') await live.vm.resume().catch(() => {});
        if (err instanceof HostError) throw err;
        throw new HostError('STORAGE_ERROR', `snapshot of '${name}' failed: ${(err as Error).message}`);
      }
    });
  }

  private snapshotRestore(name: string, snapshot: string): Promise<SnapshotOutcome> {
    const live = this.find(name);
    return this.withLock(live, async () => {
      const t0 = performance.now();
      const store = this.store(live);
      const meta = store.get(snapshot);
      if (live.rec.state === 'rebooting') throw new HostError('INVALID_STATE', `'${name}' is rebooting`);
      const statePath = store.statePath(meta);
      let workerMs: number | undefined;
      // A live VM reverting to a memory snapshot keeps its (warm) worker: the guest is released, the disks
      // reverted, and the state loaded in the same thread.
      const vm = live.vm;
      if (vm && statePath && vm.releaseGuest && vm.restoreInPlace) {
        try {
          await vm.releaseGuest();
          await store.revertDisks(meta, live.rec.config.disks);
          workerMs = (await vm.restoreInPlace(statePath, { lazyRam: true })).ms;
        } catch (err) {
          if (live.vm === vm) await this.doStop(live, `revert to ${snapshot} failed: ${(err as Error).message}`, 'crashed');
          throw new HostError('ENGINE_ERROR', `reverting '${name}' to ${snapshot} failed: ${(err as Error).message}`);
        }
        if (live.rec.state !== 'running') this.setState(live, 'running');
        if (meta.vmState === 'paused') {
          await this.engineCall(live, (v) => v.pause());
          this.setState(live, 'paused');
        }
        store.sweep(live.rec.config.disks, this.allDiskPaths());
        this.log(`${name}: reverted to snapshot ${snapshot} in place`);
        return { vm: this.view(live, null), snapshot: this.snapshotView(store, meta), totalMs: performance.now() - t0, workerMs };
      }
      if (live.vm) await this.doStop(live, `reverting to snapshot ${snapshot}`);
      await store.revertDisks(meta, live.rec.config.disks);
      store.sweep(live.rec.config.disks, this.allDiskPaths());
      if (statePath) {
        const info = await this.doStart(live, { path: statePath, lazyRam: true });
        workerMs = info ? info.ms : undefined;
        if (meta.vmState === 'paused') {
          await this.engineCall(live, (v) => v.pause());
          this.setState(live, 'paused');
        }
      }
      this.log(`${name}: reverted to snapshot ${snapshot}`);
      return { vm: this.view(live, null), snapshot: this.snapshotView(store, meta), totalMs: performance.now() - t0, workerMs };
    });
  }

  private snapshotDelete(name: string, snapshot: string): Promise<{ deleted: string }> {
    const live = this.find(name);
    return this.withLock(live, async () => {
      this.store(live).remove(snapshot, this.allDiskPaths());
      this.log(`${name}: snapshot ${snapshot} deleted`);
      return { deleted: snapshot };
    });
  }

  /**
   * A linked clone: the source's disks are frozen as layers (the source continues on new overlays, as after a
   * snapshot) and the clone gets its own overlays over the same layers. With `running`, the source's machine state
   * is saved too and the clone resumes from it. The clone gets a fresh identity (cloneIdentity).
   */
  private async clone(
    source: string,
    target: string,
    running: boolean,
  ): Promise<{ vm: VmView; source: string; totalMs: number }> {
    const t0 = performance.now();
    const src = this.find(source);
    if (!isValidVmName(target))
      throw new HostError('INVALID_NAME', `VM name ${JSON.stringify(target)} must match [a-z0-9][a-z0-9-]*`);
    if (this.vms.has(target) || this.creating.has(target) || this.registry.exists(target))
      throw new HostError('VM_EXISTS', `a VM named '${target}' already exists`);
    this.creating.add(target);
    let live: LiveVm;
    let statePath: string | null = null;
    try {
      live = await this.withLock(src, async () => {
        const state = src.rec.state;
        const isLive = !!src.vm && (state === 'running' || state === 'paused');
        if (running && !isLive)
          throw new HostError('INVALID_STATE', `'${source}' is ${state}; --running needs a running or paused VM`);
        const store = this.store(src);
        store.sweep(src.rec.config.disks, this.allDiskPaths());
        const snapName = `clone-${target}`;
        const tmp = store.begin(snapName, src.rec.config.disks);
        const parent = store.current();
        const dir = this.registry.createDir(target);
        try {
          if (isLive && state === 'running') await this.engineCall(src, (v) => v.pause());
          const { layers, info } = await this.freezeVm(src, store, tmp, running);
          if (isLive && state === 'running') await this.engineCall(src, (v) => v.resume());
          // The clone's base is a snapshot of the source: listed by 'snapshot ls', and its layers stay while any
          // VM's disks reach them.
          const meta: SnapshotMeta = {
            format: SNAPSHOT_FORMAT,
            version: 1,
            name: snapName,
            parent,
            createdAt: new Date().toISOString(),
            vmState: isLive ? (state as 'running' | 'paused') : 'stopped',
            layers,
            state: running ? SNAPSHOT_STATE_FILE : null,
            stateBytes: info?.bytes ?? 0,
          };
          store.finish(tmp, meta);
          const disks: DiskConfig[] = [];
          for (const [i, d] of src.rec.config.disks.entries()) {
            const path = join(dir, basename(d.path));
            const layer = layers[i];
            if (layer)
              await createDiskFile({ path, format: 'qcow2', backingFile: join(store.vmDir, layer), backingFormat: 'qcow2' });
            else copyDisk(d.path, path);
            disks.push({ ...d, path });
          }
          statePath = store.statePath(meta);
          const now = new Date().toISOString();
          const rec: VmRecord = {
            schema: RECORD_SCHEMA,
            name: target,
            uuid: randomUUID(),
            createdAt: now,
            updatedAt: now,
            state: 'defined',
            autostart: false,
            ...(src.rec.image ? { image: src.rec.image } : {}),
            ...(src.rec.bootMarker ? { bootMarker: src.rec.bootMarker } : {}),
            config: cloneIdentity({ ...src.rec.config, name: target, disks }),
          };
          this.registry.save(rec);
          return this.track(rec);
        } catch (err) {
          rmSync(tmp, { recursive: true, force: true });
          this.registry.remove(target);
          if (isLive && state === 'running' && src.vm && src.rec.state === 'running') await src.vm.resume().catch(() => {});
          if (err instanceof HostError) throw err;
          throw new HostError('STORAGE_ERROR', `cloning '${source}' failed: ${(err as Error).message}`);
        }
      });
    } finally {
      this.creating.delete(target);
    }
    if (statePath) {
      const path: string = statePath;
      await this.withLock(live, () => this.doStart(live, { path, lazyRam: true }));
      // The clone runs the source's guest: give it its own identity from inside (agent) where it can.
      await this.engineCall(live, async (v) => v.sendAgentRequest?.(identityRequest(guestIdentity(target)))).catch((err: Error) =>
        this.log(`${target}: the guest agent did not take the clone identity: ${err.message}`),
      );
    }
    this.log(`cloned ${source} to ${target}${running ? ' (running)' : ''}`);
    return { vm: this.view(live, null), source, totalMs: performance.now() - t0 };
  }

  /** Every VM's disk images: the roots that keep snapshot layers alive (clones sit on other VMs' layers). */
  private allDiskPaths(): string[] {
    return [...this.vms.values()].flatMap((l) => l.rec.config.disks.map((d) => d.path));
  }

  /** VMs whose disks are built on layers in `name`'s folder (its linked clones). */
  private dependentsOf(name: string): string[] {
    const dir = this.registry.vmDir(name) + '/';
    return [...this.vms.values()]
      .filter((l) => l.rec.name !== name)
      .filter((l) =>
        l.rec.config.disks.some((d) => {
          for (let p = backingOf(d.path), depth = 0; p && depth < 32; p = backingOf(p), depth++)
            if (p.startsWith(dir)) return true;
          return false;
        }),
      )
      .map((l) => l.rec.name);
  }

  private async doStart(live: LiveVm, restore?: { path: string; lazyRam: boolean }): Promise<StateFileInfo | void> {
    this.check(live, 'start');
    const engineVm = this.opts.engine.create(live.rec.config, {
      console: (bytes) => this.onConsole(live, bytes),
      guestReboot: () => this.onGuestReboot(live, engineVm),
      exit: (exit) => this.onExit(live, engineVm, exit),
    });
    live.vm = engineVm;
    live.lastStats = null;
    this.setState(live, 'running');
    try {
      if (!restore) return await engineVm.start();
      if (!engineVm.restore) throw new Error(`the ${this.opts.engine.name} engine cannot restore VMs`);
      return await engineVm.restore(restore.path, { lazyRam: restore.lazyRam });
    } catch (err) {
      const message = (err as Error).message;
      if (live.vm === engineVm) {
        live.vm = undefined;
        await engineVm.stop().catch(() => {});
        this.setState(live, 'crashed', `${restore ? 'restore' : 'start'} failed: ${message}`);
      }
      if (restore && /machine state (file|section)/.test(message)) throw new HostError('BAD_STATE_FILE', message);
      throw new HostError('ENGINE_ERROR', `could not ${restore ? 'restore' : 'start'} '${live.rec.name}': ${message}`);
    }
  }

  private async doStop(live: LiveVm, reason: string, to: VmState = 'stopped'): Promise<void> {
    this.check(live, 'stop');
    const vm = live.vm;
    live.vm = undefined;
    if (vm) await vm.stop();
    if (live.rec.state !== 'crashed' || to === 'crashed') this.setState(live, to, reason);
  }

  // ---- engine events ----------------------------------------------------------------------------------------

  private onConsole(live: LiveVm, bytes: Uint8Array): void {
    live.log.append(bytes);
    for (const v of live.viewers) {
      try {
        v.output(bytes);
      } catch {
        live.viewers.delete(v);
      }
    }
  }

  private onGuestReboot(live: LiveVm, vm: EngineVm): void {
    if (live.vm !== vm || live.rec.state !== 'running') return;
    this.setState(live, 'rebooting', 'the guest rebooted');
    this.setState(live, 'running', 'the guest rebooted');
  }

  private onExit(live: LiveVm, vm: EngineVm, exit: VmExit): void {
    if (live.vm !== vm || this.vms.get(live.rec.name) !== live) return;
    live.vm = undefined;
    void vm.stop().catch(() => {});
    const event: LifecycleEvent = exit.kind === 'poweroff' ? 'guest-poweroff' : 'crash';
    const to = nextState(live.rec.state, event);
    if (to) this.setState(live, to, exit.kind === 'poweroff' ? 'the guest powered off' : exit.message);
    this.log(`${live.rec.name}: ${exit.kind === 'poweroff' ? 'powered off' : `crashed: ${exit.message}`}`);
  }

  // ---- helpers ----------------------------------------------------------------------------------------------

  private track(rec: VmRecord): LiveVm {
    const live: LiveVm = {
      rec,
      vm: undefined,
      log: new ConsoleLog(join(this.registry.vmDir(rec.name), 'console.log'), this.opts.consoleLogBytes),
      viewers: new Set(),
      lock: Promise.resolve(),
      stateWaiters: new Set(),
      lastStats: null,
    };
    this.vms.set(rec.name, live);
    return live;
  }

  private find(name: string): LiveVm {
    if (!isValidVmName(name))
      throw new HostError('INVALID_NAME', `VM name ${JSON.stringify(name)} must match [a-z0-9][a-z0-9-]*`);
    const live = this.vms.get(name);
    if (!live) throw new HostError('VM_NOT_FOUND', `no VM named '${name}'`);
    return live;
  }

  private check(live: LiveVm, event: LifecycleEvent): void {
    if (this.closed) throw new HostError('VM_BUSY', 'the daemon is shutting down');
    if (nextState(live.rec.state, event) === undefined) {
      throw new HostError('INVALID_STATE', new TransitionError(live.rec.state, event).message);
    }
  }

  private setState(live: LiveVm, state: VmState, reason?: string): void {
    live.rec = { ...live.rec, state, stateReason: reason, updatedAt: new Date().toISOString() };
    if (reason === undefined) delete live.rec.stateReason;
    if (this.vms.get(live.rec.name) === live) {
      try {
        this.registry.save(live.rec);
      } catch (err) {
        this.log(`${live.rec.name}: could not save vm.json: ${(err as Error).message}`);
      }
    }
    for (const w of live.stateWaiters) w();
  }

  private waitForState(live: LiveVm, done: (s: VmState) => boolean, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        live.stateWaiters.delete(check);
        resolve();
      };
      const check = (): void => {
        if (done(live.rec.state) || this.vms.get(live.rec.name) !== live) finish();
      };
      const timer = setTimeout(finish, timeoutMs);
      live.stateWaiters.add(check);
      check();
    });
  }

  private withLock<T>(live: LiveVm, fn: () => Promise<T>): Promise<T> {
    const run = live.lock.then(fn, fn);
    live.lock = run.catch(() => {});
    return run;
  }

  private async engineCall(live: LiveVm, fn: (vm: EngineVm) => Promise<void>): Promise<void> {
    if (!live.vm) throw new HostError('INVALID_STATE', `'${live.rec.name}' has no running machine`);
    try {
      await fn(live.vm);
    } catch (err) {
      throw new HostError('ENGINE_ERROR', `${live.rec.name}: ${(err as Error).message}`);
    }
  }

  private async sampleStats(live: LiveVm): Promise<VmStats | null> {
    if (!live.vm) return null;
    try {
      live.lastStats = await live.vm.stats();
    } catch {
      /* keep the last sample */
    }
    return live.lastStats;
  }

  private attach(name: string, viewer: ConsoleViewer): ConsoleSession {
    const live = this.find(name);
    live.viewers.add(viewer);
    return {
      write: (bytes) => live.vm?.consoleInput(bytes),
      close: () => {
        live.viewers.delete(viewer);
      },
    };
  }

  private view(live: LiveVm, stats: VmStats | null): VmView {
    const r = live.rec;
    return {
      name: r.name,
      uuid: r.uuid,
      state: r.state,
      ...(r.stateReason ? { stateReason: r.stateReason } : {}),
      autostart: r.autostart,
      ...(r.image ? { image: r.image } : {}),
      ...(r.bootMarker ? { bootMarker: r.bootMarker } : {}),
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
      config: r.config,
      stats,
    };
  }

  private async hostInfo(): Promise<HostInfo> {
    const byState = Object.fromEntries(VM_STATES.map((s) => [s, 0])) as Record<VmState, number>;
    let vcpus = 0;
    let memoryBytes = 0;
    let residentBytes = 0;
    let cpuPercent = 0;
    for (const live of this.vms.values()) {
      byState[live.rec.state]++;
      if (!isActive(live.rec.state)) continue;
      vcpus += live.rec.config.cpus;
      memoryBytes += live.rec.config.memoryMiB * MIB;
      const s = await this.sampleStats(live);
      residentBytes += s?.residentBytes ?? 0;
      cpuPercent += s?.cpuPercent ?? 0;
    }
    const mem = process.memoryUsage();
    const cpuList = cpus();
    return {
      hostname: hostname(),
      cpus: cpuList.length,
      cpuModel: cpuList[0]?.model ?? 'unknown',
      memoryBytes: totalmem(),
      freeMemoryBytes: freemem(),
      loadAverage: loadavg(),
      daemon: {
        pid: process.pid,
        uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
        rssBytes: mem.rss,
        heapUsedBytes: mem.heapUsed,
        engine: this.opts.engine.name,
        version: VERSION,
      },
      vms: { total: this.vms.size, byState },
      usage: { vcpus, memoryBytes, residentBytes, cpuPercent: Math.round(cpuPercent * 10) / 10 },
    };
  }
}

/** A kernel/initrd/firmware path from a request: absolute, normalised (no '..'), an existing regular file. */
function checkHostFile(what: string, p: string): void {
  if (!isAbsolute(p) || normalize(p) !== p || p.split('/').includes('..')) {
    throw new HostError('INVALID_PATH', `${what} path must be absolute and normalised, got ${JSON.stringify(p)}`);
  }
  if (!existsSync(p) || !statSync(p).isFile()) throw new HostError('INVALID_PATH', `${what} ${p} is not a file`);
}
