/**
 * The host layer: the VM registry, the lifecycle of every VM, console fan-out and monitoring. It receives typed
 * actions (actions.ts) and drives VMs only through an Engine. Every state change goes through lifecycle.ts and is
 * persisted atomically before the action reports success.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { cpus, freemem, hostname, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import type {
  ActionOutcome,
  ConsoleSession,
  ConsoleViewer,
  CreateVmSpec,
  HostAction,
  HostChannel,
  HostInfo,
  HostResult,
  NetworkView,
  NicSpec,
  PublishSpec,
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
import { FirstBootError, parseFirstBoot, type FirstBootConfig, type FirstBootInput } from './first-boot/config.js';
import { SEED_FILE, SEED_SERIAL, seedImage } from './first-boot/seed.js';
import { checkConfigFiles, checkRequestedFiles, daemonPathPolicy, type PathPolicy } from './path-policy.js';
import { refuseNonKernel } from './kernel-file.js';
import { isActive, nextState, TransitionError, VM_STATES, type LifecycleEvent, type VmState } from './lifecycle.js';
import { Registry, RECORD_SCHEMA, type VmRecord } from './registry.js';
import { guestsCacheDir } from '../guests/paths.js';
import { EventBus } from './events.js';
import { CpuManager, describeCpu } from './cpu/manager.js';
import { probeCpuEnforcer, type MechanismChoice } from './cpu/probe.js';
import { CpuEnforceError } from './cpu/enforcer.js';
import {
  applyCpuPatch,
  cpuSettingsFromRecord,
  CpuSettingsError,
  defaultCpuSettings,
  type CpuPatch,
  type CpuSettings,
} from './cpu/settings.js';
import { Monitor } from './monitor/monitor.js';
import { PolicyLoop } from './cpu/policy-loop.js';
import { hotplugCommand, hotplugProblem } from './cpu/hotplug.js';
import { HISTORY_SECONDS, SAMPLE_INTERVAL_MS } from './monitor/samples.js';
import type { VmViewStats } from './actions.js';
import {
  NetworkManager,
  type ForwardSpec,
  type NetworkLease,
  type RunningNetwork,
  type StartNetwork,
  type VmNetworkLink,
} from './network-manager.js';
import type { NetworkHandle } from '../net/network-host.js';
import type { Worker } from 'node:worker_threads';
import { WarmPool } from './worker-pool.js';
import { DEFAULT_NETWORK, NetworkRegistry, formatIpv4, parseIpv4, parseSubnet, type NetworkRecord } from './networks.js';
import {
  defaultVmConfig,
  MAC_RE,
  validateRate,
  validateVmConfig,
  type DiskConfig,
  type NicConfig,
  type PublishedPort,
  type VmConfig,
} from '../vm/config.js';
import { AgentError, type ExecRequest, type ExecResult } from '../vm/agent-client.js';
import type { StateFileInfo } from '../vm/protocol.js';
import { cloneIdentity } from './clone-identity.js';
import type { LiveVm } from './live-vm.js';
import { SnapshotManager } from './snapshot-manager.js';
import {
  applyMemoryPatch,
  checkMemoryTarget,
  defaultMemorySettings,
  describeMemory,
  floorMiB,
  memorySettingsFromRecord,
  MemorySettingsError,
  type MemoryPatch,
  type MemorySettings,
} from './memory/settings.js';
import { admissionProblem, defaultBudgetMiB, type MemoryBudget } from './memory/budget.js';
import { MemoryManager, type VmMemoryFigures } from './memory/manager.js';

export interface HypervisorOptions {
  home: HomeLayout;
  engine: Engine;
  /** How long a graceful shutdown waits for the guest before forcing (overridable per request). */
  shutdownTimeoutMs?: number;
  /** Console log size before rotation. */
  consoleLogBytes?: number;
  log?: (line: string) => void;
  /** Which host files API clients may name as kernel/initrd/firmware (default: the image store and guest cache). */
  pathPolicy?: PathPolicy;
  /** How to enforce CPU settings: the best the host offers ('auto', default) or one named mechanism. */
  cpuMechanism?: MechanismChoice;
  /** Starts one virtual network (its switch and gateway); default: a network worker (src/net/network-host.ts). */
  startNetwork?: StartNetwork;
  /**
   * Network workers kept started ahead of need for the default startNetwork (0, the default here: off; the
   * daemon keeps one). A network stops with its last VM, so without one a cold restore waits for a thread start.
   */
  warmNetworkWorkers?: number;
  /** Subnet of the 'default' NAT network. */
  defaultSubnet?: string;
  /** Host memory budget and overcommit ratio (default: host RAM minus a reserve, 1.0). */
  memoryBudget?: MemoryBudget;
  /** The engine that finds and takes over VMs an earlier daemon left running (process mode); default `engine`. */
  reattachEngine?: Engine;
  /** On close, VMs whose engine can let go of them (process mode) keep running for the next daemon. */
  keepVmsOnExit?: boolean;
  /** Which user VM processes run as (src/host/vm-process-user.ts), for `typevisor host`. */
  vmProcessUser?: string;
}

const MIB = 1024 * 1024;
/** How long an API read waits for a VM's own counters (its CPU figures come from the kernel regardless). */
const API_STATS_WAIT_MS = 10;
/** The monitor's 1 s samples wait longer, so the history has every VM's counters. */
const MONITOR_STATS_WAIT_MS = 250;
const VERSION = '0.1.0';

export class Hypervisor implements HostChannel {
  readonly registry: Registry;
  readonly images: ImageStore;
  readonly networks: NetworkRegistry;
  private readonly netManager: NetworkManager;
  /** Network workers started ahead of need (warmNetworkWorkers); undefined when off or startNetwork is given. */
  private networkWorkers: WarmPool<Worker> | undefined;
  private readonly vms = new Map<string, LiveVm>();
  /** Names being created right now (their folder may not exist yet). */
  private readonly creating = new Set<string>();
  private readonly startedAt = Date.now();
  /**
   * The daemon's RSS with no VM running (at start-up, and again whenever the host view finds none): the base
   * the host view's measured per-VM overhead is counted from.
   */
  private emptyRssBytes = process.memoryUsage.rss();
  private readonly log: (line: string) => void;
  private closed = false;
  readonly events = new EventBus();
  readonly cpu: CpuManager;
  private readonly cpuSkipped: string[];
  readonly monitor: Monitor;
  private readonly policies: PolicyLoop;
  readonly memoryBudget: MemoryBudget;
  readonly memory: MemoryManager;

  private readonly paths: PathPolicy;
  private readonly snapshots: SnapshotManager;

  constructor(private readonly opts: HypervisorOptions) {
    this.registry = new Registry(opts.home.vmsDir);
    this.paths = opts.pathPolicy ?? daemonPathPolicy(opts.home.imagesDir, guestsCacheDir());
    this.images = new ImageStore(opts.home.imagesDir, (image) =>
      [...this.vms.values()].filter((l) => l.rec.image === image).map((l) => l.rec.name),
    );
    this.log = opts.log ?? (() => {});
    const probed = probeCpuEnforcer(opts.cpuMechanism ?? 'auto');
    this.cpuSkipped = probed.skipped;
    this.cpu = new CpuManager(probed.enforcer, this.events, this.log);
    this.memoryBudget = opts.memoryBudget ?? { budgetMiB: defaultBudgetMiB(), overcommit: 1 };
    this.memory = new MemoryManager(this.memoryBudget, this.events, this.log);
    this.monitor = new Monitor(
      () => this.monitored(),
      this.log,
      undefined,
      (samples) => {
        if (![...this.vms.values()].some((l) => isActive(l.rec.state))) this.emptyRssBytes = process.memoryUsage.rss();
        return this.memory.tick(samples, (name) => this.vms.get(name)?.vm);
      },
    );
    this.policies = new PolicyLoop(this.cpu, this.log);
    this.networks = new NetworkRegistry(opts.home.networksDir, opts.defaultSubnet, this.log);
    this.netManager = new NetworkManager({
      registry: this.networks,
      start: opts.startNetwork ?? this.networkStarter(opts.warmNetworkWorkers ?? 0),
      knownLeases: (network) => this.knownLeases(network),
      onLease: (network, lease) => this.onLease(network, lease),
      log: this.log,
    });
    this.snapshots = new SnapshotManager({
      registry: this.registry,
      engineName: opts.engine.name,
      log: this.log,
      find: (name) => this.find(name),
      liveVms: () => this.vms.values(),
      claimName: (name) => {
        if (this.vms.has(name) || this.creating.has(name) || this.registry.exists(name))
          throw new HostError('VM_EXISTS', `a VM named '${name}' already exists`);
        this.creating.add(name);
      },
      releaseName: (name) => void this.creating.delete(name),
      track: (rec) => this.track(rec),
      forget: (name) => void this.vms.delete(name),
      withLock: (live, fn) => this.withLock(live, fn),
      engineCall: (live, fn) => this.engineCall(live, fn),
      start: (live, restore) => this.doStart(live, restore),
      stop: (live, reason, to) => this.doStop(live, reason, to),
      setState: (live, state, reason) => this.setState(live, state, reason),
      view: (live) => this.view(live, null),
      withoutHostConflicts: (config) => this.withoutHostConflicts(config),
    });
  }

  private networkStarter(warm: number): StartNetwork {
    if (warm > 0) {
      this.networkWorkers = new WarmPool<Worker>({
        size: warm,
        start: async () => (await import('../net/network-host.js')).spawnNetworkWorker(),
        dispose: async (w) => void (await w.terminate()),
        died: (w) => new Promise((resolve) => w.once('exit', resolve)),
        log: (line) => this.log(`network ${line}`),
      });
    }
    return workerNetworkStarter(this.networkWorkers);
  }

  /** Loads the registry; VMs that were live when the daemon died are stopped, or started when autostart. */
  async init(): Promise<void> {
    this.monitor.start();
    this.policies.start();
    this.networks.load();
    this.networkWorkers?.fill();
    this.registry.sweep();
    const leftRunning: LiveVm[] = [];
    for (const rec of this.registry.loadAll((err) => this.log(`skipping VM: ${err.message}`))) {
      const live = this.track(rec);
      const left = this.leftBehind(live);
      if (left?.kind === 'alive') leftRunning.push(live);
      else if (left && isActive(rec.state)) this.setState(live, left.state, left.reason);
      else if (isActive(rec.state)) {
        this.setState(live, 'stopped', 'the daemon exited while the VM was running');
      }
    }
    for (const live of leftRunning) await this.withLock(live, () => this.reattach(live));
    // Snapshot operations cut short by a crash leave partial folders, .next overlays or unreferenced layers.
    await this.snapshots.sweepAll();
    for (const live of this.vms.values()) {
      if (live.rec.autostart && !live.vm) {
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
    this.monitor.stop();
    this.policies.stop();
    await Promise.all(
      [...this.vms.values()].map(async (live) => {
        if (live.vm?.detach && this.opts.keepVmsOnExit) {
          // The VM process runs on; its record keeps its state for the next daemon, which reattaches.
          const vm = live.vm;
          live.vm = undefined;
          await vm.detach!().catch(() => {});
          this.cpu.detach(live.rec.name, vm);
        } else if (live.vm) {
          const vm = live.vm;
          live.vm = undefined;
          await vm.stop().catch(() => {});
          if (isActive(live.rec.state)) this.setState(live, 'stopped', 'the daemon stopped');
        }
        await this.releaseNet(live);
        await live.log.flush();
      }),
    );
    this.cpu.closeAll();
    await this.opts.engine.close?.();
    await this.netManager.close();
    await this.networkWorkers?.close();
    await this.registry.settled();
  }

  send<A extends HostAction>(action: A): Promise<HostResult<A>> {
    return this.dispatch(action) as Promise<HostResult<A>>;
  }

  private async dispatch(action: HostAction): Promise<unknown> {
    switch (action.type) {
      case 'list':
        // What the API reports is on disk: reads wait for the (asynchronous) vm.json writes already asked for.
        await this.registry.settled();
        return [...this.vms.values()].map((l) => this.view(l, null));
      case 'get': {
        const live = this.find(action.name);
        await this.registry.settled(action.name);
        return this.view(live, action.withStats ? await this.sampleStats(live) : null);
      }
      case 'create':
        return this.create(action.spec);
      case 'update':
        return this.update(action.name, action.patch);
      case 'delete':
        return this.remove(action.name, action.force);
      case 'action': {
        const outcome = await this.act(action.name, action.action, action.timeoutMs, action.graceful === true);
        await this.registry.settled(action.name); // states reached through engine events (a graceful power-off)
        return outcome;
      }
      case 'exec':
        return this.exec(action.name, action.request);
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
      case 'image-import': {
        // The files are read by the daemon: only from the directories its owner allowed (see path-policy.ts).
        const s = action.spec;
        const checked = (what: string, p: string | undefined) => (p === undefined ? undefined : this.paths.check(what, p));
        return this.images.import({
          ...s,
          disk: checked('disk', s.disk)!,
          kernel: checked('kernel', s.kernel),
          initrd: checked('initrd', s.initrd),
          firmware: checked('firmware', s.firmware),
        });
      }
      case 'image-delete':
        await this.images.remove(action.name);
        return { deleted: action.name };
      case 'stats-all':
        return Promise.all([...this.vms.values()].map(async (l) => this.view(l, await this.sampleStats(l))));
      case 'vm-history': {
        const live = this.find(action.name);
        return {
          name: live.rec.name,
          intervalSeconds: SAMPLE_INTERVAL_MS / 1000,
          samples: this.monitor.vmHistory(live.rec.name, action.seconds ?? HISTORY_SECONDS),
        };
      }
      case 'host-history':
        return {
          intervalSeconds: SAMPLE_INTERVAL_MS / 1000,
          samples: this.monitor.hostHistory(action.seconds ?? HISTORY_SECONDS),
        };
      case 'events': {
        const events = this.events.since(action.afterId ?? 0);
        return action.listener ? { events, unsubscribe: this.events.subscribe(action.listener) } : { events };
      }
      case 'network-list':
        return Promise.all(this.networks.list().map((n) => this.networkView(n)));
      case 'network-get':
        return this.networkView(this.networks.get(action.name));
      case 'network-create':
        return this.networkView(this.networks.create(action.spec));
      case 'network-delete': {
        this.networks.get(action.name);
        if (action.name === DEFAULT_NETWORK) throw new HostError('INVALID_STATE', "the 'default' network cannot be removed");
        const users = this.networkUsers(action.name);
        if (users.length)
          throw new HostError(
            'NETWORK_IN_USE',
            `network '${action.name}' is used by VM${users.length > 1 ? 's' : ''} ${users.join(', ')}`,
          );
        this.networks.remove(action.name);
        return { deleted: action.name };
      }
      case 'save':
        return this.snapshots.save(action.name, action.path, action.stop);
      case 'restore':
        return this.snapshots.restoreSaved(action.path, action.newName);
      case 'snapshot-create':
        return this.snapshots.snapshotCreate(action.name, action.snapshot, action.diskOnly);
      case 'snapshot-list':
        return this.snapshots.snapshotList(action.name);
      case 'snapshot-restore':
        return this.snapshots.snapshotRestore(action.name, action.snapshot);
      case 'snapshot-delete':
        return this.snapshots.snapshotDelete(action.name, action.snapshot);
      case 'clone':
        return this.snapshots.clone(action.source, action.target, action.running);
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
      const files = checkRequestedFiles(this.paths, spec);
      if (files.kernel) await refuseNonKernel(files.kernel, spec.kernelFormat ?? 'auto');
      const cpu = this.checkedCpu(defaultCpuSettings(), spec.cpu ?? {});
      const memory = checkedMemory(defaultMemorySettings(), spec.memory ?? {}, spec.memoryMiB);
      if (floorMiB(memory, spec.memoryMiB) > this.memoryBudget.budgetMiB)
        throw new HostError(
          'INVALID_CONFIG',
          `'${spec.name}' needs at least ${floorMiB(memory, spec.memoryMiB)} MiB but the whole memory budget is ${this.memoryBudget.budgetMiB} MiB`,
        );

      const nics = this.planNics(spec.nics);
      const publish = this.planPublish(spec.publish ?? [], nics);
      const rootFromDisk = !!(image?.rootfs && spec.rootDisk);
      const config: VmConfig = defaultVmConfig({
        name: spec.name,
        cpus: spec.vcpus,
        memoryMiB: spec.memoryMiB,
        kernel: files.kernel ?? image?.kernel,
        // An image boots from its root filesystem overlay when it has one, else from its initrd.
        initrd: files.initrd ?? (spec.kernel || rootFromDisk ? undefined : image?.initrd),
        append: spec.cmdline ?? (spec.kernel ? undefined : rootFromDisk ? image?.rootCmdline : image?.cmdline),
        firmware:
          spec.firmware === 'builtin' && image?.firmware
            ? { kind: 'file', path: image.firmware }
            : spec.firmware === 'builtin'
              ? { kind: 'builtin' }
              : spec.firmware === 'none'
                ? { kind: 'none' }
                : { kind: 'file', path: files.firmware },
        disks: [],
        rng: spec.rng,
        balloon: spec.balloon,
        virtioConsole: spec.virtioConsole,
        nics,
        publish,
      });
      const firstBoot = spec.firstBoot ? parsedFirstBoot(spec.firstBoot, spec.name) : undefined;
      const plannedDisks = (rootFromDisk ? 1 : 0) + spec.disks.length + (firstBoot ? 1 : 0);
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
        const uuid = randomUUID();
        if (firstBoot) {
          const path = join(dir, SEED_FILE);
          await writeFile(path, seedImage(uuid, firstBoot), { mode: 0o600 });
          disks.push({ path, format: 'raw', readOnly: true, serial: SEED_SERIAL });
        }
        config.disks = disks;
        const now = new Date().toISOString();
        const rec: VmRecord = {
          schema: RECORD_SCHEMA,
          name: spec.name,
          uuid,
          createdAt: now,
          updatedAt: now,
          state: 'defined',
          autostart: spec.autostart,
          image: image?.name,
          bootMarker: image?.bootMarker,
          config,
          cpu,
          memory,
          ...(firstBoot ? { login: { user: firstBoot.users[0]!.name } } : {}),
        };
        await this.registry.save(rec);
        const live = this.track(rec);
        this.log(`created ${spec.name}`);
        this.events.emit({
          type: 'vm-created',
          vm: spec.name,
          reason: `created (${describeCpu(cpu)}) (${describeMemory(memory, spec.memoryMiB)})`,
        });
        return this.view(live, null);
      } catch (err) {
        await this.registry.remove(spec.name);
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
      // Refuse bad CPU and memory settings before anything else in the patch acts.
      if (patch.cpu) this.checkedCpu(this.cpuOf(live), patch.cpu);
      const maxMiB = patch.memoryMiB ?? live.rec.config.memoryMiB;
      const memory = checkedMemory(this.memoryOf(live), patch.memory ?? {}, maxMiB);
      const targetMiB = patch.memory?.targetMiB;
      if (targetMiB !== undefined) {
        if (!live.vm || live.rec.state !== 'running')
          throw new HostError('INVALID_STATE', `'${name}' is ${live.rec.state}; a memory target applies to a running VM`);
        if (!live.rec.config.balloon)
          throw new HostError('INVALID_CONFIG', `'${name}' has no balloon device: its memory cannot be resized`);
        if (targetMiB !== null) checkedTarget(targetMiB, memory, maxMiB);
      }
      if (live.vm && patch.memory?.minMiB !== undefined) {
        const others = this.admitted().filter((v) => v.name !== name);
        const problem = admissionProblem(this.memoryBudget, others, { name, maxMiB, floorMiB: floorMiB(memory, maxMiB) });
        if (problem) throw new HostError('MEMORY_BUDGET', problem);
      }
      // vCPUs of a running VM: hot-plug (harts online/offline), not a new board size.
      if (patch.vcpus !== undefined && live.vm && patch.memoryMiB === undefined && patch.cmdline === undefined) {
        await this.hotplug(live, patch.vcpus);
        if (Object.keys(patch).length === 1) return this.view(live, await this.sampleStats(live));
        patch = { ...patch, vcpus: undefined };
      }
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
      const nics = (live.rec.config.nics ?? []).map((n) => ({ ...n }));
      for (const r of patch.nicRates ?? []) {
        const nic = nics[r.nic];
        if (!nic) throw new HostError('INVALID_CONFIG', `'${name}' has no NIC ${r.nic}`);
        for (const dir of ['rx', 'tx'] as const) {
          const limit = r[dir];
          if (limit === undefined) continue;
          if (limit === null) delete nic[dir];
          else {
            const problems = validateRate(`${dir} rate`, limit);
            if (problems.length) throw new HostError('INVALID_CONFIG', problems.join('; '));
            nic[dir] = limit;
          }
        }
      }
      if (patch.nicRates?.length && live.vm) {
        for (const r of patch.nicRates) {
          const nic = nics[r.nic]!;
          await this.engineCall(live, (vm) => vm.setNicRate(r.nic, nic.rx ?? null, nic.tx ?? null));
        }
      }
      const config: VmConfig = {
        ...live.rec.config,
        ...(patch.nicRates?.length ? { nics } : {}),
        cpus: patch.vcpus ?? live.rec.config.cpus,
        memoryMiB: patch.memoryMiB ?? live.rec.config.memoryMiB,
        append: patch.cmdline ?? live.rec.config.append,
      };
      // A new board size brings every hart of it online.
      if (patch.vcpus !== undefined) delete config.vcpusOnline;
      const problems = validateVmConfig(config);
      if (problems.length) throw new HostError('INVALID_CONFIG', problems.join('; '));
      // CPU settings are checked in full first and applied to the running VM before they are recorded.
      const cpu = patch.cpu ? this.checkedCpu(this.cpuOf(live), patch.cpu) : this.cpuOf(live);
      if (patch.cpu && live.vm) {
        try {
          await this.cpu.update(name, cpu);
        } catch (err) {
          throw new HostError('ENGINE_ERROR', `${name}: the CPU settings could not be applied: ${(err as Error).message}`);
        }
      }
      if (targetMiB !== undefined) await this.memory.setTarget(name, live.vm!, targetMiB, maxMiB);
      if (live.vm && patch.memory) this.memory.update(name, memory, maxMiB);
      live.rec = {
        ...live.rec,
        config,
        cpu,
        memory,
        autostart: patch.autostart ?? live.rec.autostart,
        updatedAt: new Date().toISOString(),
      };
      await this.registry.save(live.rec);
      if (patch.cpu)
        this.events.emit({
          type: 'settings',
          vm: name,
          changes: { cpu: patch.cpu },
          reason: `cpu set to ${describeCpu(cpu)}${live.vm ? ` (in force now, ${this.cpu.enforcer.mechanism})` : ' (from the next start)'}`,
        });
      if (patch.memory)
        this.events.emit({
          type: 'settings',
          vm: name,
          changes: { memory: patch.memory },
          reason:
            `${describeMemory(memory, maxMiB)}` +
            (targetMiB === undefined
              ? ''
              : targetMiB === null
                ? ', target cleared (the policy sizes it)'
                : `, target ${targetMiB} MiB`),
        });
      return this.view(live, null);
    });
  }

  private async remove(name: string, force: boolean): Promise<{ deleted: string }> {
    const live = this.find(name);
    return this.withLock(live, async () => {
      if (!force) this.check(live, 'delete');
      const dependents = this.snapshots.dependentsOf(name);
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
      await this.releaseNet(live);
      this.vms.delete(name);
      this.cpu.detach(name);
      this.memory.detach(name);
      this.monitor.forget(name);
      this.events.emit({ type: 'vm-deleted', vm: name, reason: force ? 'deleted (forced)' : 'deleted' });
      await live.log.flush();
      for (const waiter of live.stateWaiters) waiter();
      await this.registry.remove(name);
      this.log(`deleted ${name}`);
      return { deleted: name };
    });
  }

  // ---- lifecycle actions ------------------------------------------------------------------------------------

  private async act(name: string, action: VmAction, timeoutMs?: number, graceful = false): Promise<ActionOutcome> {
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
        if (graceful) return this.gracefulReboot(live, timeoutMs ?? this.opts.shutdownTimeoutMs ?? 30_000);
        await this.withLock(live, () => this.resetInPlace(live));
        return { vm: this.view(live, null) };
      case 'shutdown':
        return this.shutdown(live, timeoutMs ?? this.opts.shutdownTimeoutMs ?? 30_000);
    }
  }

  /** Reset: the machine starts again from the firmware at once (what the guest was doing is lost). */
  private async resetInPlace(live: LiveVm): Promise<void> {
    this.check(live, 'reboot');
    this.setState(live, 'rebooting');
    try {
      await this.engineCall(live, (vm) => vm.reboot());
    } catch (err) {
      if (live.rec.state === 'rebooting') await this.doStop(live, `reboot failed: ${(err as Error).message}`, 'crashed');
      throw err;
    }
    if (live.rec.state === 'rebooting') this.setState(live, 'running');
  }

  /**
   * Graceful reboot: the guest agent is asked to reboot (a systemd guest stops its services and unmounts its
   * filesystems first); the action completes when the guest resets the machine itself. Without an agent, or if
   * the guest has not rebooted within the timeout, the VM is reset as by a plain reboot (`forced`).
   */
  private async gracefulReboot(live: LiveVm, timeoutMs: number): Promise<ActionOutcome> {
    const before = live.guestReboots;
    let asked = false;
    await this.withLock(live, async () => {
      this.check(live, 'reboot');
      if (!live.rec.config.virtioConsole || !live.vm?.sendAgentRequest) {
        this.log(`${live.rec.name}: graceful reboot unavailable (no guest agent channel); resetting`);
        return;
      }
      try {
        await live.vm.sendAgentRequest('reboot');
        asked = true;
      } catch (err) {
        this.log(`${live.rec.name}: graceful reboot unavailable (${(err as Error).message}); resetting`);
      }
    });
    if (asked) await this.waitForState(live, (s) => live.guestReboots !== before || !isActive(s), timeoutMs);
    let forced = false;
    if (live.guestReboots === before && isActive(live.rec.state) && this.vms.get(live.rec.name) === live) {
      forced = true;
      await this.withLock(live, async () => {
        if (live.guestReboots === before && isActive(live.rec.state)) await this.resetInPlace(live);
      });
    }
    return { vm: this.view(live, null), forced };
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

  /**
   * Brings harts online or offline in a running guest through its agent, confirms it from SBI HSM, and keeps
   * the count for every later boot (a guest reboot included: the worker boots with `maxcpus=`).
   */
  private async hotplug(live: LiveVm, online: number): Promise<void> {
    const name = live.rec.name;
    const max = live.rec.config.cpus;
    const problem = hotplugProblem(online, max);
    if (problem) throw new HostError('INVALID_CONFIG', problem);
    if (live.rec.state !== 'running')
      throw new HostError('INVALID_STATE', `'${name}' is ${live.rec.state}: vCPUs are hot-plugged in a running guest`);
    if (!live.rec.config.virtioConsole)
      throw new HostError('AGENT_UNAVAILABLE', `'${name}' has no guest agent channel: vCPUs cannot be hot-plugged`);
    const before = (await this.sampleStats(live))?.vcpusOnline;
    let result: ExecResult;
    try {
      result = await live.vm!.exec({ argv: hotplugCommand(online, max), timeoutMs: 30_000 });
    } catch (err) {
      throw execError(name, { argv: ['vcpu hot-plug'], timeoutMs: 30_000 }, err);
    }
    if (result.exitCode !== 0) {
      const why = Buffer.from(result.stderr).toString('utf8').trim() || `exit status ${result.exitCode}`;
      throw new HostError('ENGINE_ERROR', `${name}: the guest could not change its online vCPUs: ${why}`);
    }
    const end = Date.now() + 5000;
    let now = (await this.sampleStats(live))?.vcpusOnline;
    while (now !== online && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      now = (await this.sampleStats(live))?.vcpusOnline;
    }
    if (now !== online)
      throw new HostError(
        'ENGINE_ERROR',
        `${name}: the guest reports vCPUs ${Buffer.from(result.stdout).toString().trim()} online but ${now} harts run`,
      );
    const kept = online < max ? online : undefined;
    await this.engineCall(live, (vm) => vm.setVcpusOnline(kept ?? null));
    const config: VmConfig = { ...live.rec.config, vcpusOnline: kept };
    if (kept === undefined) delete config.vcpusOnline;
    live.rec = { ...live.rec, config, updatedAt: new Date().toISOString() };
    await this.registry.save(live.rec);
    this.events.emit({
      type: 'settings',
      vm: name,
      changes: { vcpusOnline: online },
      reason: `vCPUs online ${before ?? '?'} -> ${online} of ${max} (guest cpus ${Buffer.from(result.stdout).toString().trim()})`,
    });
  }

  /**
   * Runs a command through the guest agent. Not under the VM's lock: commands run concurrently, and a stop
   * must not wait for one (it ends it instead).
   */
  private async exec(name: string, req: ExecRequest): Promise<ExecResult> {
    const live = this.find(name);
    if (this.closed) throw new HostError('VM_BUSY', 'the daemon is shutting down');
    const vm = live.vm;
    if (live.rec.state !== 'running' || !vm)
      throw new HostError('INVALID_STATE', `cannot run a command in a VM that is ${live.rec.state}; start it first`);
    if (!live.rec.config.virtioConsole)
      throw new HostError('AGENT_UNAVAILABLE', `'${name}' has no guest agent channel (created with virtioConsole: false)`);
    try {
      return await vm.exec(req);
    } catch (err) {
      throw execError(name, req, err);
    }
  }

  private async doStart(live: LiveVm, restore?: { path: string; lazyRam: boolean }): Promise<StateFileInfo | void> {
    this.check(live, 'start');
    const t0 = performance.now();
    const maxMiB = live.rec.config.memoryMiB;
    const problem = admissionProblem(this.memoryBudget, this.admitted(), {
      name: live.rec.name,
      maxMiB,
      floorMiB: floorMiB(this.memoryOf(live), maxMiB),
    });
    if (problem) throw new HostError('MEMORY_BUDGET', problem);
    checkConfigFiles(this.paths, live.rec.config);
    for (const nic of live.rec.config.nics ?? []) this.networks.get(nic.network);
    await this.releaseNet(live);
    const t1 = performance.now();
    // The networks start (a worker each) while the VM starts or restores: the VM's NIC channels exist at once and
    // its first frames wait in them. A network that cannot take the VM fails the start below, all undone.
    const net = this.netManager.connectVm(live.rec.name, live.rec.config);
    live.net = net;
    let netMs = 0;
    const netReady = net.ready.then(() => void (netMs = performance.now() - t1));
    const previousState = live.rec.state;
    const previousReason = live.rec.stateReason;
    const t2 = performance.now();
    const engineVm = this.opts.engine.create(
      live.rec.config,
      {
        console: (bytes) => this.onConsole(live, bytes),
        guestReboot: () => this.onGuestReboot(live, engineVm),
        exit: (exit) => this.onExit(live, engineVm, exit),
        threads: (tids) => this.cpu.threadsReported(live.rec.name, engineVm, tids),
      },
      { nicPorts: net.ports, vmDir: this.registry.vmDir(live.rec.name) },
    );
    try {
      this.cpu.attach(live.rec.name, engineVm, this.cpuOf(live));
    } catch (err) {
      await this.releaseNet(live);
      throw new HostError('ENGINE_ERROR', `could not place '${live.rec.name}' under its CPU settings: ${(err as Error).message}`);
    }
    live.vm = engineVm;
    live.lastStats = null;
    this.memory.attach(live.rec.name, live.rec.config, this.memoryOf(live));
    this.setState(live, 'running');
    try {
      if (!restore) {
        await bothOrFirstFailure(engineVm.start(), netReady);
        await this.cpu.started(live.rec.name);
        return;
      }
      if (!engineVm.restore) throw new Error(`the ${this.opts.engine.name} engine cannot restore VMs`);
      const t3 = performance.now();
      let restoreMs = 0;
      const [info] = await bothOrFirstFailure(
        engineVm.restore(restore.path, { lazyRam: restore.lazyRam }).then((i) => {
          restoreMs = performance.now() - t3;
          return i;
        }),
        netReady,
      );
      const t4 = performance.now();
      await this.cpu.started(live.rec.name);
      const t5 = performance.now();
      const host = {
        checks: t1 - t0,
        placeVm: t3 - t2,
        // Side by side: the VM's restore and its networks' start (measured from before the VM was created).
        engineRestore: restoreMs,
        connectNetworks: netMs,
        cpuStarted: t5 - t4,
      };
      return { ...info, phases: { ...host, ...info.phases } };
    } catch (err) {
      /** Ends the half-started VM (if it is still this start's) and leaves it in `state`. */
      const undo = async (state: VmState, reason: string | undefined): Promise<void> => {
        if (live.vm !== engineVm) return;
        live.vm = undefined;
        await engineVm.stop().catch(() => {});
        this.cpu.detach(live.rec.name, engineVm);
        await this.releaseNet(live);
        this.memory.detach(live.rec.name);
        this.setState(live, state, reason);
      };
      if (err instanceof NetworkStartError) {
        // The VM never got its networks: it goes back to how it was, as if the start had been refused up front.
        await undo(previousState, previousReason);
        throw err.cause;
      }
      const message = (err as Error).message;
      await undo('crashed', `${restore ? 'restore' : 'start'} failed: ${message}`);
      if (restore && /machine state (file|section)/.test(message)) throw new HostError('BAD_STATE_FILE', message);
      throw new HostError('ENGINE_ERROR', `could not ${restore ? 'restore' : 'start'} '${live.rec.name}': ${message}`);
    }
  }

  private async doStop(live: LiveVm, reason: string, to: VmState = 'stopped'): Promise<void> {
    this.check(live, 'stop');
    const vm = live.vm;
    live.vm = undefined;
    if (vm) {
      await vm.stop();
      this.cpu.detach(live.rec.name, vm);
    }
    await this.releaseNet(live);
    this.memory.detach(live.rec.name);
    if (live.rec.state !== 'crashed' || to === 'crashed') this.setState(live, to, reason);
  }

  // ---- VMs an earlier daemon left running (process mode) -------------------------------------------------------

  private leftBehind(live: LiveVm): ReturnType<NonNullable<Engine['leftBehind']>> {
    const engine = this.opts.reattachEngine ?? this.opts.engine;
    try {
      return engine.leftBehind?.(this.registry.vmDir(live.rec.name));
    } catch (err) {
      this.log(`${live.rec.name}: could not look for its VM process: ${(err as Error).message}`);
      return undefined;
    }
  }

  /**
   * Takes over a VM process an earlier daemon left running: its NICs join the (new) network workers, console,
   * stats and control come back, and it is put back in the state its record asks for (a snapshot the earlier
   * daemon was taking when it died may have paused it). One whose disks a snapshot had closed is stopped.
   */
  private async reattach(live: LiveVm): Promise<void> {
    const engine = this.opts.reattachEngine ?? this.opts.engine;
    const name = live.rec.name;
    const vmDir = this.registry.vmDir(name);
    let net: VmNetworkLink | undefined;
    try {
      if (!engine.reattach) throw new Error(`the ${engine.name} engine cannot reattach VMs`);
      net = this.netManager.connectVm(name, live.rec.config);
      live.net = net;
      await net.ready;
      let vmRef: EngineVm | undefined;
      const found = await engine.reattach(
        live.rec.config,
        {
          console: (bytes) => this.onConsole(live, bytes),
          guestReboot: () => vmRef && this.onGuestReboot(live, vmRef),
          exit: (exit) => vmRef && this.onExit(live, vmRef, exit),
          threads: (tids) => vmRef && this.cpu.threadsReported(name, vmRef, tids),
        },
        { nicPorts: net.ports, vmDir },
      );
      const vm = (vmRef = found.vm);
      live.vm = vm;
      live.lastStats = null;
      try {
        this.cpu.attach(name, vm, this.cpuOf(live));
        this.cpu.threadsReported(name, vm, vm.threadIds());
      } catch (err) {
        this.log(`${name}: reattached without its CPU settings: ${(err as Error).message}`);
      }
      this.memory.attach(name, live.rec.config, this.memoryOf(live));
      if (found.disksDetached) {
        await this.doStop(live, 'the daemon died during a snapshot that had closed its disks; stopped');
        return;
      }
      if (!found.started) {
        await this.doStop(live, 'the daemon died before the guest started (or while reverting it); stopped');
        return;
      }
      const want = isActive(live.rec.state) ? live.rec.state : 'running';
      if (want === 'paused' && !found.paused) await vm.pause();
      if (want !== 'paused' && found.paused) await vm.resume();
      this.setState(live, want === 'paused' ? 'paused' : 'running', 'reattached after a daemon restart');
      await this.cpu.started(name);
      this.log(`${name}: reattached to its VM process`);
    } catch (err) {
      const vm = live.vm;
      live.vm = undefined;
      if (vm) {
        await vm.stop().catch(() => {});
        this.cpu.detach(name, vm);
      }
      await this.releaseNet(live);
      this.memory.detach(name);
      const message = `could not reattach to its VM process: ${(err as Error).message}`;
      this.log(`${name}: ${message}`);
      this.setState(live, 'crashed', message);
    }
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
    live.guestReboots++;
    this.setState(live, 'rebooting', 'the guest rebooted');
    this.setState(live, 'running', 'the guest rebooted');
  }

  private onExit(live: LiveVm, vm: EngineVm, exit: VmExit): void {
    if (live.vm !== vm || this.vms.get(live.rec.name) !== live) return;
    live.vm = undefined;
    this.memory.detach(live.rec.name);
    void vm
      .stop()
      .catch(() => {})
      .then(() => {
        this.cpu.detach(live.rec.name, vm);
        if (live.vm === undefined) return this.releaseNet(live);
      });
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
      guestReboots: 0,
      lastStats: null,
      net: undefined,
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
    const previous = live.rec.state;
    live.rec = { ...live.rec, state, stateReason: reason, updatedAt: new Date().toISOString() };
    if (reason === undefined) delete live.rec.stateReason;
    if (this.vms.get(live.rec.name) === live) {
      // Written in order off the event loop; user actions wait for it in withLock before they report success.
      this.registry.save(live.rec).catch((err: Error) => this.log(`${live.rec.name}: could not save vm.json: ${err.message}`));
    }
    for (const w of live.stateWaiters) w();
    this.events.emit({ type: 'vm-state', vm: live.rec.name, state, previous, reason: reason ?? `${state} by request` });
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
    // The action reports success only once the state it reached is on disk.
    const run = live.lock.then(fn, fn).finally(() => this.registry.settled(live.rec.name));
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

  /**
   * Fresh figures of a live VM. API reads wait only briefly for the VM's counters so that a VM starved by
   * its weight or cap cannot slow the API; the monitor (API_STATS_WAIT_MS unless given) waits longer.
   */
  private async sampleStats(live: LiveVm, waitMs = API_STATS_WAIT_MS): Promise<VmStats | null> {
    if (!live.vm) return null;
    try {
      live.lastStats = await live.vm.stats(waitMs);
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

  private view(live: LiveVm, raw: VmStats | null): VmView {
    const r = live.rec;
    const cpu = this.cpu.view(r.name, this.cpuOf(live));
    const cap = cpu.effectiveCapPercent;
    const stats: VmViewStats | null = raw
      ? { ...raw, capUsePercent: cap === null ? null : Math.round((raw.cpuPercent / cap) * 1000) / 10 }
      : null;
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
      addresses: (r.config.nics ?? []).map((n, nic) => ({
        nic,
        network: n.network,
        mac: n.mac,
        ...(r.leases?.[n.mac] ? { ip: r.leases[n.mac] } : {}),
      })),
      stats,
      cpu,
      memory: this.memory.view(r.name, this.memoryOf(live), r.config.memoryMiB),
      ...(r.login ? { login: r.login } : {}),
    };
  }

  // ---- memory allocation ------------------------------------------------------------------------------------

  private memoryOf(live: LiveVm): MemorySettings {
    return memorySettingsFromRecord(live.rec.memory, live.rec.config.memoryMiB);
  }

  /** The VMs holding memory now (admission counts them), with their maxima and floors. */
  private admitted(): { name: string; maxMiB: number; floorMiB: number }[] {
    return [...this.vms.values()]
      .filter((l) => l.vm !== undefined)
      .map((l) => ({
        name: l.rec.name,
        maxMiB: l.rec.config.memoryMiB,
        floorMiB: floorMiB(this.memoryOf(l), l.rec.config.memoryMiB),
      }));
  }

  // ---- CPU allocation ---------------------------------------------------------------------------------------

  private cpuOf(live: LiveVm): CpuSettings {
    return cpuSettingsFromRecord(live.rec.cpu, this.cpu.hostCores);
  }

  /** The settings after a patch, refused (INVALID_CONFIG) when the host or its mechanism cannot honour them. */
  private checkedCpu(current: CpuSettings, patch: CpuPatch): CpuSettings {
    try {
      const next = applyCpuPatch(current, patch, this.cpu.hostCores);
      this.cpu.check(next);
      return next;
    } catch (err) {
      if (err instanceof CpuSettingsError || err instanceof CpuEnforceError) throw new HostError('INVALID_CONFIG', err.message);
      throw err;
    }
  }

  /** The figures the monitor records each second. */
  private async monitored(): Promise<
    { name: string; state: string; stats: VmStats | null; weight: number; capPercent: number | null }[]
  > {
    return Promise.all(
      [...this.vms.values()].map(async (live) => {
        const cpu = this.cpu.view(live.rec.name, this.cpuOf(live));
        return {
          name: live.rec.name,
          state: live.rec.state,
          stats: live.rec.state === 'running' ? await this.sampleStats(live, MONITOR_STATS_WAIT_MS) : null,
          weight: cpu.weight,
          capPercent: cpu.effectiveCapPercent,
        };
      }),
    );
  }

  // ---- networks ---------------------------------------------------------------------------------------------

  private async releaseNet(live: LiveVm): Promise<void> {
    const net = live.net;
    live.net = undefined;
    await net
      ?.release()
      .catch((err: unknown) => this.log(`${live.rec.name}: releasing its networks failed: ${(err as Error).message}`));
  }

  /**
   * A restored VM's config where another VM on this host already uses its MACs or host ports (the original still
   * runs): those NICs get fresh MACs (a new address from their network) and those published ports are dropped.
   */
  private withoutHostConflicts(config: VmConfig): VmConfig {
    const macs = new Set<string>();
    const ports = new Set<string>();
    for (const live of this.vms.values()) {
      for (const n of live.rec.config.nics ?? []) macs.add(n.mac);
      for (const p of live.rec.config.publish ?? []) ports.add(`${p.proto}:${p.hostPort}`);
    }
    const fresh = cloneIdentity(config);
    return {
      ...config,
      nics: (config.nics ?? []).map((n, i) => (macs.has(n.mac) ? fresh.nics![i]! : n)),
      publish: (config.publish ?? []).filter((p) => !ports.has(`${p.proto}:${p.hostPort}`)),
    };
  }

  /** NICs for a new VM: one on 'default' unless the request says otherwise; MACs generated unique on this host. */
  private planNics(specs: NicSpec[] | undefined): NicConfig[] {
    const wanted = specs ?? [{ network: DEFAULT_NETWORK }];
    const taken = new Set<string>();
    for (const live of this.vms.values()) for (const n of live.rec.config.nics ?? []) taken.add(n.mac);
    return wanted.map((spec) => {
      this.networks.get(spec.network);
      let mac = spec.mac?.toLowerCase();
      if (mac !== undefined) {
        if (!MAC_RE.test(mac))
          throw new HostError('INVALID_CONFIG', `MAC ${JSON.stringify(spec.mac)} must look like 52:54:00:12:34:56`);
        if (taken.has(mac)) throw new HostError('INVALID_CONFIG', `MAC ${mac} is already used by another NIC on this host`);
      } else {
        // 52:54:00 is the prefix QEMU and libvirt give guests: locally administered, unicast.
        do mac = ['52', '54', '00', ...randomBytes(3).toString('hex').match(/../g)!].join(':');
        while (taken.has(mac));
      }
      taken.add(mac);
      return {
        network: spec.network,
        mac,
        ...(spec.rx ? { rx: spec.rx } : {}),
        ...(spec.tx ? { tx: spec.tx } : {}),
        ...(spec.offload === false ? { offload: false } : {}),
      };
    });
  }

  private planPublish(specs: PublishSpec[], nics: NicConfig[]): PublishedPort[] {
    const inUse = new Map<string, string>();
    for (const live of this.vms.values())
      for (const p of live.rec.config.publish ?? []) inUse.set(`${p.proto}:${p.hostPort}`, live.rec.name);
    return specs.map((spec) => {
      const p: PublishedPort = {
        proto: spec.proto,
        hostIp: spec.hostIp ?? '127.0.0.1',
        hostPort: spec.hostPort,
        guestPort: spec.guestPort,
        nic: spec.nic ?? 0,
      };
      const nic = nics[p.nic];
      if (!nic)
        throw new HostError(
          'INVALID_CONFIG',
          `published port ${p.hostPort} names NIC ${p.nic}, but the VM has ${nics.length} NIC(s)`,
        );
      if (parseIpv4(p.hostIp) === undefined)
        throw new HostError('INVALID_CONFIG', `host address ${JSON.stringify(p.hostIp)} is not an IPv4 address`);
      if (this.networks.get(nic.network).mode !== 'nat')
        throw new HostError(
          'INVALID_CONFIG',
          `network '${nic.network}' is isolated: ports can only be published on a nat network`,
        );
      const key = `${p.proto}:${p.hostPort}`;
      const owner = inUse.get(key);
      if (owner !== undefined)
        throw new HostError(
          'PORT_IN_USE',
          `host port ${p.hostPort}/${p.proto} is already published by ${owner === '' ? 'this request' : `VM '${owner}'`}`,
        );
      inUse.set(key, '');
      return p;
    });
  }

  private networkUsers(network: string): string[] {
    return [...this.vms.values()]
      .filter((l) => (l.rec.config.nics ?? []).some((n) => n.network === network))
      .map((l) => l.rec.name);
  }

  private knownLeases(network: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const live of this.vms.values())
      for (const n of live.rec.config.nics ?? []) {
        const ip = live.rec.leases?.[n.mac];
        if (n.network === network && ip) out[n.mac] = ip;
      }
    return out;
  }

  /** A network leased an address: keep it in the VM's record so the VM gets it again next time. */
  private onLease(network: string, lease: NetworkLease): void {
    for (const live of this.vms.values()) {
      if (!(live.rec.config.nics ?? []).some((n) => n.network === network && n.mac === lease.mac)) continue;
      if (live.rec.leases?.[lease.mac] === lease.ip) return;
      live.rec = { ...live.rec, leases: { ...live.rec.leases, [lease.mac]: lease.ip } };
      try {
        this.registry.save(live.rec);
      } catch (err) {
        this.log(`${live.rec.name}: could not save its lease: ${(err as Error).message}`);
      }
      this.log(`${live.rec.name}: ${lease.mac} leased ${lease.ip} on ${network}`);
      return;
    }
  }

  private async networkView(rec: NetworkRecord): Promise<NetworkView> {
    const cidr = parseSubnet(rec.subnet);
    const running = this.netManager.isRunning(rec.name);
    return {
      ...rec,
      ...(rec.mode === 'nat' ? { gateway: formatIpv4(cidr.network + 2) } : {}),
      dns: formatIpv4(cidr.network + 3),
      running,
      vms: this.networkUsers(rec.name),
      leases: running ? await this.netManager.leases(rec.name) : [],
      stats: running ? await this.netManager.stats(rec.name) : null,
    };
  }

  private async hostInfo(): Promise<HostInfo> {
    const byState = Object.fromEntries(VM_STATES.map((s) => [s, 0])) as Record<VmState, number>;
    let vcpus = 0;
    let memoryBytes = 0;
    let residentBytes = 0;
    let cpuPercent = 0;
    const perVm: VmMemoryFigures[] = [];
    // Sampled together: one busy worker's slow answer must not add up across every VM.
    const live = [...this.vms.values()];
    const samples = await Promise.all(live.map((l) => (isActive(l.rec.state) ? this.sampleStats(l) : null)));
    for (const [i, l] of live.entries()) {
      byState[l.rec.state]++;
      if (!isActive(l.rec.state)) continue;
      vcpus += l.rec.config.cpus;
      memoryBytes += l.rec.config.memoryMiB * MIB;
      const s = samples[i];
      if (s) perVm.push({ name: l.rec.name, stats: s });
      residentBytes += s?.residentBytes ?? 0;
      cpuPercent += s?.cpuPercent ?? 0;
    }
    const mem = process.memoryUsage();
    const active = live.filter((l) => isActive(l.rec.state)).length;
    if (active === 0) this.emptyRssBytes = mem.rss;
    // What each VM really costs beyond its RAM, isolate and thread included (the API figures count its heap only).
    const guestRam = perVm.reduce((a, f) => a + f.stats.guestRamBytes, 0);
    const measuredOverhead = active > 0 ? Math.max(0, (mem.rss - this.emptyRssBytes - guestRam) / active) : null;
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
        vmProcessUser: this.opts.vmProcessUser ?? "the daemon's",
        warmPool: this.opts.engine.poolStats?.() ?? null,
        networkWarmPool: this.networkWorkers?.stats() ?? null,
        version: VERSION,
      },
      vms: { total: this.vms.size, byState },
      usage: { vcpus, memoryBytes, residentBytes, cpuPercent: Math.round(cpuPercent * 10) / 10 },
      cpuControl: { mechanism: this.cpu.enforcer.mechanism, detail: this.cpu.enforcer.detail, skipped: this.cpuSkipped },
      memory: this.memory.hostView(this.admitted(), perVm, measuredOverhead),
    };
  }
}

function checkedMemory(current: MemorySettings, patch: MemoryPatch, maxMiB: number): MemorySettings {
  try {
    return applyMemoryPatch(current, patch, maxMiB);
  } catch (err) {
    if (err instanceof MemorySettingsError) throw new HostError('INVALID_CONFIG', err.message);
    throw err;
  }
}

function checkedTarget(targetMiB: number, s: MemorySettings, maxMiB: number): void {
  try {
    checkMemoryTarget(targetMiB, s, maxMiB);
  } catch (err) {
    if (err instanceof MemorySettingsError) throw new HostError('INVALID_CONFIG', err.message);
    throw err;
  }
}

/** What an exec failure means to the API client. */
function execError(name: string, req: ExecRequest, err: unknown): HostError {
  const message = err instanceof Error ? err.message : String(err);
  if (!(err instanceof AgentError)) return new HostError('ENGINE_ERROR', `${name}: ${message}`);
  switch (err.failure) {
    case 'no-agent':
      return new HostError('AGENT_UNAVAILABLE', `${name}: ${message}`);
    case 'invalid':
      return new HostError('INVALID_REQUEST', message);
    case 'not-ready':
    case 'timeout':
      return new HostError('EXEC_TIMEOUT', `${name}: ${message}`);
    case 'gone':
      return new HostError('EXEC_ABORTED', `${name}: ${message}`);
    case 'refused':
      if (err.reason === 'no-such-cwd')
        return new HostError('INVALID_REQUEST', `cwd ${JSON.stringify(req.cwd)} is not a directory in the guest`);
      if (err.reason === 'busy') return new HostError('VM_BUSY', `${name}: the guest agent runs too many commands already`);
      return new HostError('ENGINE_ERROR', `${name}: ${message}`);
  }
}

/**
 * Starts networks in workers (src/net/network-host.ts), taking a started one from `pool` when it has one.
 * Forwards are named by their spec here and by the id the network gave them there.
 */
function workerNetworkStarter(pool: WarmPool<Worker> | undefined): StartNetwork {
  return async ({ record, leases, onLease }) => {
    const { startNetwork } = await import('../net/network-host.js');
    const handle = await startNetwork(
      { name: record.name, subnet: record.subnet, mode: record.mode, dnsHosts: record.dnsHosts, leases },
      { worker: pool?.take() },
    );
    return runningNetwork(handle, onLease);
  };
}

function runningNetwork(handle: NetworkHandle, onLease: (lease: NetworkLease) => void): RunningNetwork {
  handle.onLease(onLease);
  const forwardIds = new Map<string, string>();
  const key = (f: ForwardSpec) => `${f.proto}:${f.hostIp}:${f.hostPort}`;
  return {
    attachNic: ({ nicId, mac, hostname }, port) => handle.attachNicPort(nicId, { mac, hostname }, port),
    detachNic: (nicId) => handle.detachNic(nicId),
    addForward: async (f) => {
      const info = await handle.addForward(f);
      forwardIds.set(key(f), info.id);
    },
    removeForward: async (f) => {
      const id = forwardIds.get(key(f));
      forwardIds.delete(key(f));
      if (id !== undefined) await handle.removeForward(id);
    },
    leases: () => handle.leases(),
    stats: async () => ({ ...(await handle.stats()) }),
    close: () => handle.close(),
  };
}

/** First-boot input parsed before the VM's folder exists; a FirstBootError becomes INVALID_CONFIG. */
function parsedFirstBoot(input: FirstBootInput, vmName: string): FirstBootConfig {
  try {
    return parseFirstBoot(input, vmName);
  } catch (err) {
    if (err instanceof FirstBootError) throw new HostError('INVALID_CONFIG', err.message);
    throw err;
  }
}

/** A VM's networks could not take it (`cause`: the HostError to answer with). */
class NetworkStartError extends Error {
  constructor(override readonly cause: unknown) {
    super((cause as Error).message);
    this.name = 'NetworkStartError';
  }
}

/**
 * Waits for a VM's start and its networks' start, side by side: both results, or the first failure at once (the
 * networks' wrapped in NetworkStartError). The other one's later failure is not left unhandled.
 */
function bothOrFirstFailure<T>(vm: Promise<T>, networks: Promise<void>): Promise<[T, void]> {
  const net = networks.catch((err: unknown) => {
    throw new NetworkStartError(err);
  });
  vm.catch(() => {});
  net.catch(() => {});
  return Promise.all([vm, net]);
}
