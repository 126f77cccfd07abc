/**
 * The host layer: the VM registry, the lifecycle of every VM, console fan-out and monitoring. It receives typed
 * actions (actions.ts) and drives VMs only through an Engine. Every state change goes through lifecycle.ts and is
 * persisted atomically before the action reports success.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { cpus, freemem, hostname, loadavg, totalmem } from 'node:os';
import { isAbsolute, join, normalize } from 'node:path';
import type {
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
import { ImageStore } from './image-store.js';
import { isActive, nextState, TransitionError, VM_STATES, type LifecycleEvent, type VmState } from './lifecycle.js';
import { Registry, RECORD_SCHEMA, type VmRecord } from './registry.js';
import { defaultVmConfig, validateVmConfig, type DiskConfig, type VmConfig } from '../vm/config.js';

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
  readonly images: ImageStore;
  private readonly vms = new Map<string, LiveVm>();
  /** Names being created right now (their folder may not exist yet). */
  private readonly creating = new Set<string>();
  private readonly startedAt = Date.now();
  private readonly log: (line: string) => void;
  private closed = false;

  constructor(private readonly opts: HypervisorOptions) {
    this.registry = new Registry(opts.home.vmsDir);
    this.images = new ImageStore(opts.home.imagesDir, (image) =>
      [...this.vms.values()].filter((l) => l.rec.image === image).map((l) => l.rec.name),
    );
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
      case 'image-list':
        return this.images.list();
      case 'image-get':
        return this.images.get(action.name);
      case 'image-import':
        return this.images.import(action.spec);
      case 'image-delete':
        await this.images.remove(action.name);
        return { deleted: action.name };
      case 'stats-all':
        return Promise.all([...this.vms.values()].map(async (l) => this.view(l, await this.sampleStats(l))));
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
          spec.firmware === 'builtin' && image?.firmware
            ? { kind: 'file', path: image.firmware }
            : spec.firmware === 'builtin'
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

  private async doStart(live: LiveVm): Promise<void> {
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
      await engineVm.start();
    } catch (err) {
      const message = (err as Error).message;
      if (live.vm === engineVm) {
        live.vm = undefined;
        await engineVm.stop().catch(() => {});
        this.setState(live, 'crashed', `start failed: ${message}`);
      }
      throw new HostError('ENGINE_ERROR', `could not start '${live.rec.name}': ${message}`);
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
