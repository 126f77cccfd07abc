/**
 * A cgroup of its own for each VM process (process mode): a memory limit of the guest's memory plus the process's
 * overhead, and a pids limit, so a runaway VM process (a guest exploiting a leak, a fork bomb in a broken runtime)
 * is stopped by the kernel without touching the daemon or other VMs: the OOM killer ends that process, and the
 * daemon records its VM crashed ("killed by SIGKILL").
 *
 * cgroup v1: a `tv-<vm>-<hash>` group under the daemon's own group in the memory and pids hierarchies (the hash
 * of the VM's folder keeps two homes' VMs of one name apart). cgroup v2: the same group name under the group the
 * daemon was started in, with memory.max, memory.oom.group and pids.max. v2's no-internal-process rule lets a
 * group hand controllers to children only while it holds no process itself, so the daemon first moves into a
 * leaf of its own (`typevisor-<pid>`, the group the v2 CPU enforcer uses too); where other processes share the
 * daemon's group (a login shell's session scope), nothing is moved and VM processes get no groups: start the
 * daemon as a service with its own delegated group (systemd `Delegate=yes`, or `systemd-run --scope -p
 * Delegate=yes`). Either way the groups outlive the daemon with their process, so a reattached VM keeps its
 * limits.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { daemonBaseGroup, parseCgroupMounts, parseProcCgroup, readText, writeText } from './cpu/cgroupfs.js';

/** Node, V8 (old space capped at 256 MiB), decode caches and device buffers above the guest's RAM. */
export const VM_PROCESS_OVERHEAD_MIB = 384;
/** Threads and processes a VM process may have (Node itself runs about a dozen threads). */
export const VM_PROCESS_PIDS_MAX = 128;
const MIB = 1024 * 1024;

export interface VmProcessGroups {
  /** The VM process's memory and pids groups (absolute folders). */
  memory: string;
  pids: string;
}

/** Where the probe looks (tests hand in a fake hierarchy's texts). */
export interface CgroupProbeInput {
  mountinfo: string;
  procCgroup: string;
  pid: number;
}

export class VmProcessCgroups {
  private constructor(
    readonly version: 1 | 2,
    private readonly memoryBase: string,
    private readonly pidsBase: string,
  ) {}

  /**
   * Writable cgroup v1 memory and pids hierarchies under the daemon's own groups, else a cgroup v2 group the
   * daemon may hand memory and pids to; or why neither.
   */
  static probe(input?: CgroupProbeInput): VmProcessCgroups | string {
    if (!input && process.platform !== 'linux') return 'not Linux';
    let mounts;
    let own;
    try {
      mounts = parseCgroupMounts(input?.mountinfo ?? readFileSync('/proc/self/mountinfo', 'utf8'));
      own = parseProcCgroup(input?.procCgroup ?? readFileSync('/proc/self/cgroup', 'utf8'));
    } catch (err) {
      return `cannot read cgroup mounts: ${(err as Error).message}`;
    }
    const pid = input?.pid ?? process.pid;
    const base = (controller: string): string | undefined => {
      const m = mounts.find((x) => x.fstype === 'cgroup' && x.controllers.includes(controller));
      const path = own.get(controller);
      return m && path !== undefined ? join(m.path, path) : undefined;
    };
    const memory = base('memory');
    const pids = base('pids');
    if (memory && pids) {
      const unwritable = notWritable([memory, pids], pid);
      return unwritable ?? new VmProcessCgroups(1, memory, pids);
    }
    const v2 = mounts.find((m) => m.fstype === 'cgroup2');
    const ownV2 = own.get('');
    if (!v2 || ownV2 === undefined) return 'no cgroup v1 memory and pids hierarchies, and no cgroup v2 hierarchy';
    const group = daemonBaseGroup(join(v2.path, ownV2), pid);
    return prepareV2(group, pid) ?? new VmProcessCgroups(2, group, group);
  }

  /** The groups of the VM whose folder is vmDir. */
  groups(vmName: string, vmDir: string): VmProcessGroups {
    const name = `tv-${vmName}-${createHash('sha256').update(vmDir).digest('hex').slice(0, 8)}`;
    return { memory: join(this.memoryBase, name), pids: join(this.pidsBase, name) };
  }

  /** Moves the process into its VM's groups with the limits for a guest of `memoryMiB`. */
  place(vmName: string, vmDir: string, pid: number, memoryMiB: number): VmProcessGroups {
    const g = this.groups(vmName, vmDir);
    for (const dir of new Set([g.memory, g.pids])) if (!existsSync(dir)) mkdirSync(dir);
    const limit = String((memoryMiB + VM_PROCESS_OVERHEAD_MIB) * MIB);
    if (this.version === 2) {
      writeText(join(g.memory, 'memory.max'), limit);
      // An OOM kill ends the VM process as a whole, never one of its threads.
      writeText(join(g.memory, 'memory.oom.group'), '1');
      writeText(join(g.pids, 'pids.max'), String(VM_PROCESS_PIDS_MAX));
      writeText(join(g.memory, 'cgroup.procs'), String(pid));
      return g;
    }
    try {
      // Charges made before the move (start-up) go with the process.
      writeText(join(g.memory, 'memory.move_charge_at_immigrate'), '3');
    } catch {
      /* not supported by this kernel: the start-up's pages stay charged to the daemon's group */
    }
    writeText(join(g.memory, 'memory.limit_in_bytes'), limit);
    writeText(join(g.pids, 'pids.max'), String(VM_PROCESS_PIDS_MAX));
    writeText(join(g.memory, 'cgroup.procs'), String(pid));
    writeText(join(g.pids, 'cgroup.procs'), String(pid));
    return g;
  }

  /**
   * Removes the VM's groups once no process is left in them. An ended process stays listed until its parent reaps
   * it, so a busy group is tried again a few times (a live process keeps its groups).
   */
  release(vmName: string, vmDir: string, attempts = 10): void {
    const g = this.groups(vmName, vmDir);
    let busy = false;
    for (const dir of new Set([g.memory, g.pids])) {
      try {
        rmdirSync(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EBUSY') busy = true;
      }
    }
    if (busy && attempts > 1) setTimeout(() => this.release(vmName, vmDir, attempts - 1), 300).unref();
  }

  /** Removes the groups of VM processes that are gone (left by a daemon that died, or by a failed removal). */
  sweep(): void {
    for (const base of new Set([this.memoryBase, this.pidsBase])) {
      let names: string[];
      try {
        names = readdirSync(base).filter((n) => n.startsWith('tv-'));
      } catch {
        continue;
      }
      for (const n of names) {
        try {
          if (readFileSync(join(base, n, 'cgroup.procs'), 'utf8').trim() === '') rmdirSync(join(base, n));
        } catch {
          /* in use, or gone already */
        }
      }
    }
  }
}

/** Why a group cannot be made and removed under one of `dirs`; undefined when it can. */
function notWritable(dirs: string[], pid: number): string | undefined {
  for (const dir of dirs) {
    const probe = join(dir, `tv-probe-${pid}`);
    try {
      mkdirSync(probe);
      rmdirSync(probe);
    } catch (err) {
      return `cannot create groups under ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
    }
  }
  return undefined;
}

/**
 * cgroup v2: `base` (the group the daemon was started in) must offer memory and pids and hand them to its
 * children; returns why not, or undefined once it does. The daemon moves into its leaf `typevisor-<pid>` first (the no-internal-process rule), but only when
 * no other process shares `base`: moving a service manager's or a shell's group around is not ours to do.
 */
function prepareV2(base: string, pid: number): string | undefined {
  let controllers: string[];
  let enabled: string[];
  try {
    controllers = readText(join(base, 'cgroup.controllers')).split(/\s+/).filter(Boolean);
    enabled = readText(join(base, 'cgroup.subtree_control')).split(/\s+/).filter(Boolean);
  } catch (err) {
    return `cgroup v2 group ${base} is not readable: ${(err as Error).message}`;
  }
  const missing = ['memory', 'pids'].filter((c) => !controllers.includes(c));
  if (missing.length)
    return `cgroup v2 group ${base} offers no ${missing.join(' or ')} controller (delegate it: systemd Delegate=yes)`;
  if (!enabled.includes('memory') || !enabled.includes('pids')) {
    let members: string[];
    try {
      members = readText(join(base, 'cgroup.procs')).split(/\s+/).filter(Boolean);
    } catch (err) {
      return `cgroup v2 group ${base} is not readable: ${(err as Error).message}`;
    }
    const others = members.filter((p) => Number(p) !== pid);
    if (others.length)
      return (
        `cgroup v2 group ${base} holds other processes than the daemon (${others.slice(0, 5).join(', ')}), so it cannot ` +
        'hand memory and pids to VM groups: run the daemon in a group of its own (systemd Delegate=yes, or ' +
        'systemd-run --scope -p Delegate=yes typevisor daemon ...)'
      );
    try {
      const leaf = join(base, `typevisor-${pid}`);
      if (!existsSync(leaf)) mkdirSync(leaf);
      if (members.includes(String(pid))) writeText(join(leaf, 'cgroup.procs'), String(pid));
      writeText(join(base, 'cgroup.subtree_control'), '+memory +pids');
    } catch (err) {
      return `cgroup v2 group ${base} cannot hand memory and pids to VM groups: ${(err as Error).message}`;
    }
  }
  return notWritable([base], pid);
}
