/**
 * Save/restore, snapshots and linked clones of the host's VMs: the operations behind `typevisor save/restore`,
 * `snapshot create/ls/restore/rm` and `clone`. Files live in snapshots.ts (saves) and snapshot-store.ts (one VM's
 * snapshots and disk layers); the VM lifecycle (start, stop, locks, state changes) stays the Hypervisor's and is
 * reached through SnapshotHost.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { SnapshotOutcome, SnapshotView, StateOutcome, VmView } from './actions.js';
import { createDiskFile } from './disks.js';
import type { EngineVm } from './engine.js';
import { HostError } from './errors.js';
import { isValidVmName } from './home.js';
import type { VmState } from './lifecycle.js';
import type { LiveVm } from './live-vm.js';
import { RECORD_SCHEMA, type Registry, type VmRecord } from './registry.js';
import {
  backingOf,
  SnapshotStore,
  SNAPSHOT_FORMAT,
  SNAPSHOT_STATE_FILE,
  type LayerUsers,
  type SnapshotMeta,
} from './snapshot-store.js';
import { cloneIdentity, guestIdentity, identityRequest } from './clone-identity.js';
import { completeSave, copyDisk, prepareSaveDir, readSaveManifest, SAVE_FORMAT, SAVE_VERSION, STATE_FILE } from './snapshots.js';
import type { DiskConfig, VmConfig } from '../vm/config.js';
import type { StateFileInfo } from '../vm/protocol.js';

/** What the snapshot operations need of the host: its registry and the lifecycle of its VMs. */
export interface SnapshotHost {
  readonly registry: Registry;
  /** The engine's name, for "cannot save" errors. */
  readonly engineName: string;
  log(line: string): void;
  /** The VM by name (INVALID_NAME, VM_NOT_FOUND). */
  find(name: string): LiveVm;
  /** Every VM the host knows. */
  liveVms(): Iterable<LiveVm>;
  /** Reserves the name of a VM about to be created (VM_EXISTS when taken); releaseName ends the reservation. */
  claimName(name: string): void;
  releaseName(name: string): void;
  /** Starts tracking a VM just written to the registry. */
  track(rec: VmRecord): LiveVm;
  /** Stops tracking a VM (a refused restore). */
  forget(name: string): void;
  withLock<T>(live: LiveVm, fn: () => Promise<T>): Promise<T>;
  /** Calls the VM's engine; failures become ENGINE_ERROR. */
  engineCall(live: LiveVm, fn: (vm: EngineVm) => Promise<void>): Promise<void>;
  /** Starts the VM, from a machine state file when `restore` is given. */
  start(live: LiveVm, restore?: { path: string; lazyRam: boolean }): Promise<StateFileInfo | void>;
  stop(live: LiveVm, reason: string, to?: VmState): Promise<void>;
  setState(live: LiveVm, state: VmState, reason?: string): void;
  view(live: LiveVm): VmView;
  /** A copied VM's config without the MACs and host ports other VMs already use. */
  withoutHostConflicts(config: VmConfig): VmConfig;
}

/** How long after a snapshot operation's reply its housekeeping starts. */
const AFTERWARDS_DELAY_MS = 200;

/** Times the steps of one operation, for the benchmark (SnapshotOutcome.phases). */
class PhaseClock {
  private readonly out: Record<string, number> = {};
  constructor(private mark: number) {}
  step(name: string): void {
    const now = performance.now();
    this.out[name] = Math.round((now - this.mark) * 10) / 10;
    this.mark = now;
  }
  /** The host's steps, then the worker's (prefixed `worker.`). */
  with(worker: Record<string, number> | undefined): Record<string, number> {
    const w = Object.entries(worker ?? {}).map(([k, v]) => [`worker.${k}`, Math.round(v * 10) / 10]);
    return { ...this.out, ...Object.fromEntries(w) };
  }
}

export class SnapshotManager {
  constructor(private readonly host: SnapshotHost) {}

  /**
   * Removes what snapshot operations cut short by a crash leave behind (partial folders, .next overlays,
   * unreferenced layers), for every VM.
   */
  async sweepAll(): Promise<void> {
    for (const live of this.host.liveVms()) {
      try {
        await this.store(live).sweep(live.rec.config.disks, this.layerUsers(live));
      } catch (err) {
        this.host.log(`${live.rec.name}: snapshot sweep failed: ${(err as Error).message}`);
      }
    }
  }

  /** Who rests on `live`'s layers, and which disks a merge of its layers may rewrite (its own, when not running). */
  private layerUsers(live: LiveVm): LayerUsers {
    const all = [...this.host.liveVms()];
    return {
      roots: this.allDiskPaths(),
      images: [...this.allDiskPaths(), ...all.flatMap((l) => this.store(l).ownImages())],
      mergeableDisks: live.vm ? [] : live.rec.config.disks.map((d) => d.path),
    };
  }

  save(name: string, path: string, stop: boolean): Promise<StateOutcome> {
    const live = this.host.find(name);
    return this.host.withLock(live, async () => {
      const t0 = performance.now();
      if (live.rec.state !== 'running' && live.rec.state !== 'paused')
        throw new HostError('INVALID_STATE', `'${name}' is ${live.rec.state}; only a running or paused VM can be saved`);
      const vm = live.vm;
      if (!vm?.saveState) throw new HostError('ENGINE_ERROR', `the ${this.host.engineName} engine cannot save VMs`);
      const tmp = prepareSaveDir(path);
      const wasRunning = live.rec.state === 'running';
      try {
        if (wasRunning) await this.host.engineCall(live, (v) => v.pause());
        let info!: StateFileInfo;
        await this.host.engineCall(live, async (v) => void (info = await v.saveState!(join(tmp, STATE_FILE))));
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
        if (stop) await this.host.stop(live, 'saved and stopped');
        else if (wasRunning) await this.host.engineCall(live, (v) => v.resume());
        return {
          vm: this.host.view(live),
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

  async restoreSaved(path: string, newName?: string): Promise<StateOutcome> {
    const t0 = performance.now();
    const manifest = readSaveManifest(path);
    const name = newName ?? manifest.name;
    if (!isValidVmName(name))
      throw new HostError('INVALID_NAME', `VM name ${JSON.stringify(name)} must match [a-z0-9][a-z0-9-]*`);
    this.host.claimName(name);
    let live: LiveVm;
    try {
      const dir = this.host.registry.createDir(name);
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
          config: this.host.withoutHostConflicts({ ...manifest.config, name, disks }),
        };
        this.host.registry.save(rec);
        live = this.host.track(rec);
      } catch (err) {
        this.host.registry.remove(name);
        throw new HostError('STORAGE_ERROR', `restoring ${path} failed: ${(err as Error).message}`);
      }
    } finally {
      this.host.releaseName(name);
    }
    // A file from elsewhere is checked whole (every RAM chunk's checksum) before the guest runs: no lazy RAM.
    let info: StateFileInfo | void;
    try {
      info = await this.host.withLock(live, () => this.host.start(live, { path: join(path, manifest.state), lazyRam: false }));
    } catch (err) {
      // A refused restore leaves no VM behind.
      this.host.forget(name);
      this.host.registry.remove(name);
      throw err;
    }
    // The original still runs here, so this copy got new MACs: the guest takes them (and a new identity) from the agent.
    if ((live.rec.config.nics ?? []).some((n, i) => n.mac !== manifest.config.nics?.[i]?.mac))
      await this.sendGuestIdentity(live, name);
    this.host.log(`restored ${name} from ${path}`);
    return {
      vm: this.host.view(live),
      path,
      stateBytes: info!.bytes,
      ramChunks: info!.ramChunks,
      workerMs: info!.ms,
      totalMs: performance.now() - t0,
    };
  }

  // ---- snapshots and clones (files in snapshot-store.ts) -----------------------------------------------------

  private store(live: LiveVm): SnapshotStore {
    return new SnapshotStore(this.host.registry.vmDir(live.rec.name));
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

  snapshotList(name: string): SnapshotView[] {
    const live = this.host.find(name);
    const store = this.store(live);
    const current = store.current();
    return store.list().map((m) => this.snapshotView(store, m, current));
  }

  /**
   * Housekeeping that need not hold up the reply, run under the VM's lock right after it: the fsyncs of a revert,
   * the snapshot's spare overlays for its next revert, and the sweep of what the operation left unreferenced.
   */
  private afterwards(live: LiveVm, store: SnapshotStore, meta: SnapshotMeta): void {
    // A moment later, so the reply and the guest's first steps do not queue behind this work's I/O.
    setTimeout(() => this.housekeeping(live, store, meta), AFTERWARDS_DELAY_MS).unref();
  }

  private housekeeping(live: LiveVm, store: SnapshotStore, meta: SnapshotMeta): void {
    if (!existsSync(store.dir)) return; // the VM was deleted meanwhile
    void this.host
      .withLock(live, async () => {
        await store.syncRevert(live.rec.config.disks);
        if (!existsSync(join(store.dir, meta.name))) return; // deleted meanwhile
        await store.prepareSpares(meta);
        await store.sweep(live.rec.config.disks, this.layerUsers(live));
      })
      .catch((err: Error) => this.host.log(`${live.rec.name}: snapshot housekeeping failed: ${err.message}`));
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
      if (!live.vm?.saveState) throw new HostError('ENGINE_ERROR', `the ${this.host.engineName} engine cannot save VMs`);
      await this.host.engineCall(live, async (v) => void (info = await v.saveState!(join(tmp, SNAPSHOT_STATE_FILE))));
    }
    const disks = live.rec.config.disks;
    const writable = disks.map((d) => (d.readOnly ? null : d.path));
    // The worker closes each image cleanly before it is frozen: a layer never carries a dirty bit or leaks.
    if (live.vm) {
      if (!live.vm.switchDisks) throw new HostError('ENGINE_ERROR', `the ${this.host.engineName} engine cannot switch disks`);
      await this.host.engineCall(live, (v) => v.switchDisks!(writable, 'detach'));
    }
    const { layers, overlays } = await store.freezeDisks(disks);
    store.switchOverlays(disks, overlays, layers);
    if (live.vm) await this.host.engineCall(live, (v) => v.switchDisks!(writable, 'attach'));
    return { layers, info };
  }

  snapshotCreate(name: string, snapshot: string | undefined, diskOnly: boolean): Promise<SnapshotOutcome> {
    const live = this.host.find(name);
    return this.host.withLock(live, async () => {
      const t0 = performance.now();
      const state = live.rec.state;
      if (state !== 'running' && state !== 'paused' && state !== 'stopped' && state !== 'defined' && state !== 'crashed')
        throw new HostError('INVALID_STATE', `'${name}' is ${state}; wait until it is running, paused or stopped`);
      const store = this.store(live);
      await store.sweep(live.rec.config.disks, this.layerUsers(live));
      const snapName =
        snapshot ?? `snap-${new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15).toLowerCase()}`;
      const tmp = store.begin(snapName, live.rec.config.disks);
      const isLive = !!live.vm && (state === 'running' || state === 'paused');
      const withState = isLive && !diskOnly;
      const parent = store.current();
      try {
        if (isLive && state === 'running') await this.host.engineCall(live, (v) => v.pause());
        const { layers, info } = await this.freezeVm(live, store, tmp, withState);
        const meta = snapshotMeta(
          snapName,
          parent,
          isLive ? (state as 'running' | 'paused') : 'stopped',
          layers,
          withState ? info : null,
        );
        store.finish(tmp, meta);
        if (isLive && state === 'running') await this.host.engineCall(live, (v) => v.resume());
        // The guest runs again; the spares for a revert are made now, so even a revert right after finds them.
        await store.prepareSpares(meta).catch((err: Error) => this.host.log(`${name}: spare overlays: ${err.message}`));
        this.afterwards(live, store, meta);
        this.host.log(`${name}: snapshot ${snapName} created`);
        return {
          vm: this.host.view(live),
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

  snapshotRestore(name: string, snapshot: string): Promise<SnapshotOutcome> {
    const live = this.host.find(name);
    return this.host.withLock(live, async () => {
      const t0 = performance.now();
      const phases = new PhaseClock(t0);
      const store = this.store(live);
      const meta = store.get(snapshot);
      if (live.rec.state === 'rebooting') throw new HostError('INVALID_STATE', `'${name}' is rebooting`);
      const statePath = store.statePath(meta);
      let info: StateFileInfo | void = undefined;
      const done = (): SnapshotOutcome => ({
        vm: this.host.view(live),
        snapshot: this.snapshotView(store, meta),
        totalMs: performance.now() - t0,
        workerMs: info ? info.ms : undefined,
        phases: phases.with(info ? info.phases : undefined),
      });
      // A live VM reverting to a memory snapshot keeps its (warm) worker: the guest is released, the disks
      // reverted, and the state loaded in the same thread.
      const vm = live.vm;
      if (vm && statePath && vm.releaseGuest && vm.restoreInPlace) {
        phases.step('lookup');
        try {
          await vm.releaseGuest();
          phases.step('releaseGuest');
          // Not synced yet: the guest runs on before the fsyncs, which follow the reply (afterwards).
          await store.revertDisks(meta, live.rec.config.disks, false);
          phases.step('revertDisks');
          info = await vm.restoreInPlace(statePath, { lazyRam: true });
          phases.step('restore');
        } catch (err) {
          if (live.vm === vm) await this.host.stop(live, `revert to ${snapshot} failed: ${(err as Error).message}`, 'crashed');
          throw new HostError('ENGINE_ERROR', `reverting '${name}' to ${snapshot} failed: ${(err as Error).message}`);
        }
        if (live.rec.state !== 'running') this.host.setState(live, 'running');
        if (meta.vmState === 'paused') {
          await this.host.engineCall(live, (v) => v.pause());
          this.host.setState(live, 'paused');
        }
        this.afterwards(live, store, meta);
        this.host.log(`${name}: reverted to snapshot ${snapshot} in place`);
        return done();
      }
      phases.step('lookup');
      if (live.vm) await this.host.stop(live, `reverting to snapshot ${snapshot}`);
      phases.step('stop');
      await store.revertDisks(meta, live.rec.config.disks, false);
      phases.step('revertDisks');
      this.afterwards(live, store, meta);
      if (statePath) {
        info = await this.host.start(live, { path: statePath, lazyRam: true });
        phases.step('start');
        if (meta.vmState === 'paused') {
          await this.host.engineCall(live, (v) => v.pause());
          this.host.setState(live, 'paused');
        }
      }
      this.host.log(`${name}: reverted to snapshot ${snapshot}`);
      return done();
    });
  }

  snapshotDelete(name: string, snapshot: string): Promise<{ deleted: string }> {
    const live = this.host.find(name);
    return this.host.withLock(live, async () => {
      await this.store(live).remove(snapshot, this.layerUsers(live));
      this.host.log(`${name}: snapshot ${snapshot} deleted`);
      return { deleted: snapshot };
    });
  }

  /**
   * A linked clone: the source's disks are frozen as layers (the source continues on new overlays, as after a
   * snapshot) and the clone gets its own overlays over the same layers. With `running`, the source's machine state
   * is saved too and the clone resumes from it. The clone gets a fresh identity (cloneIdentity).
   */
  async clone(source: string, target: string, running: boolean): Promise<{ vm: VmView; source: string; totalMs: number }> {
    const t0 = performance.now();
    const src = this.host.find(source);
    if (!isValidVmName(target))
      throw new HostError('INVALID_NAME', `VM name ${JSON.stringify(target)} must match [a-z0-9][a-z0-9-]*`);
    this.host.claimName(target);
    let live: LiveVm;
    let statePath: string | null = null;
    try {
      live = await this.host.withLock(src, async () => {
        const state = src.rec.state;
        const isLive = !!src.vm && (state === 'running' || state === 'paused');
        if (running && !isLive)
          throw new HostError('INVALID_STATE', `'${source}' is ${state}; --running needs a running or paused VM`);
        const store = this.store(src);
        await store.sweep(src.rec.config.disks, this.layerUsers(src));
        const snapName = `clone-${target}`;
        const tmp = store.begin(snapName, src.rec.config.disks);
        const parent = store.current();
        const dir = this.host.registry.createDir(target);
        try {
          if (isLive && state === 'running') await this.host.engineCall(src, (v) => v.pause());
          const { layers, info } = await this.freezeVm(src, store, tmp, running);
          if (isLive && state === 'running') await this.host.engineCall(src, (v) => v.resume());
          // The clone's base is a snapshot of the source: listed by 'snapshot ls', and its layers stay while any
          // VM's disks reach them.
          const meta = snapshotMeta(
            snapName,
            parent,
            isLive ? (state as 'running' | 'paused') : 'stopped',
            layers,
            running ? info : null,
          );
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
          this.host.registry.save(rec);
          return this.host.track(rec);
        } catch (err) {
          rmSync(tmp, { recursive: true, force: true });
          this.host.registry.remove(target);
          if (isLive && state === 'running' && src.vm && src.rec.state === 'running') await src.vm.resume().catch(() => {});
          if (err instanceof HostError) throw err;
          throw new HostError('STORAGE_ERROR', `cloning '${source}' failed: ${(err as Error).message}`);
        }
      });
    } finally {
      this.host.releaseName(target);
    }
    if (statePath) {
      const path: string = statePath;
      await this.host.withLock(live, () => this.host.start(live, { path, lazyRam: true }));
      // The clone runs the source's guest: give it its own identity from inside (agent) where it can.
      await this.sendGuestIdentity(live, target);
    }
    this.host.log(`cloned ${source} to ${target}${running ? ' (running)' : ''}`);
    return { vm: this.host.view(live), source, totalMs: performance.now() - t0 };
  }

  /**
   * A VM running another machine's memory (a clone, or a restored copy beside its original) gets its own identity
   * from inside, through the agent: machine id, entropy, hostname, and its NICs' new MACs with new leases.
   */
  private async sendGuestIdentity(live: LiveVm, hostname: string): Promise<void> {
    const id = guestIdentity(
      hostname,
      (live.rec.config.nics ?? []).map((n) => n.mac),
    );
    await this.host
      .engineCall(live, async (v) => v.sendAgentRequest?.(identityRequest(id)))
      .catch((err: Error) => this.host.log(`${live.rec.name}: the guest agent did not take its new identity: ${err.message}`));
  }

  /** Every VM's disk images: the roots that keep snapshot layers alive (clones sit on other VMs' layers). */
  allDiskPaths(): string[] {
    return [...this.host.liveVms()].flatMap((l) => l.rec.config.disks.map((d) => d.path));
  }

  /** VMs whose disks are built on layers in `name`'s folder (its linked clones). */
  dependentsOf(name: string): string[] {
    const dir = this.host.registry.vmDir(name) + '/';
    return [...this.host.liveVms()]
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
}

/** The record of a snapshot just frozen: its layers and, when it holds machine state, that state's size. */
function snapshotMeta(
  name: string,
  parent: string | null,
  vmState: SnapshotMeta['vmState'],
  layers: SnapshotMeta['layers'],
  state: StateFileInfo | null | undefined,
): SnapshotMeta {
  return {
    format: SNAPSHOT_FORMAT,
    version: 1,
    name,
    parent,
    createdAt: new Date().toISOString(),
    vmState,
    layers,
    state: state !== null ? SNAPSHOT_STATE_FILE : null,
    stateBytes: state?.bytes ?? 0,
  };
}
