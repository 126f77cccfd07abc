/**
 * A cgroup of its own for each VM process (process mode): a memory limit of the guest's memory plus the process's
 * overhead, and a pids limit, so a runaway VM process (a guest exploiting a leak, a fork bomb in a broken runtime)
 * is stopped by the kernel without touching the daemon or other VMs: the OOM killer ends that process, and the
 * daemon records its VM crashed ("killed by SIGKILL").
 *
 * cgroup v1 only for now: a `tv-<vm>-<hash>` group under the daemon's own group in the memory and pids
 * hierarchies (the hash of the VM's folder keeps two homes' VMs of one name apart). The groups outlive the daemon
 * with their process, so a reattached VM keeps its limits. With cgroup v2 the daemon's own group holds processes,
 * so its children cannot get domain controllers (the no-internal-process rule): not done there yet.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseCgroupMounts, parseProcCgroup, writeText } from './cpu/cgroupfs.js';

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

export class VmProcessCgroups {
  private constructor(
    private readonly memoryBase: string,
    private readonly pidsBase: string,
  ) {}

  /** The daemon's memory and pids groups when both are writable cgroup v1 hierarchies; else why not. */
  static probe(): VmProcessCgroups | string {
    if (process.platform !== 'linux') return 'not Linux';
    let mounts;
    let own;
    try {
      mounts = parseCgroupMounts(readFileSync('/proc/self/mountinfo', 'utf8'));
      own = parseProcCgroup(readFileSync('/proc/self/cgroup', 'utf8'));
    } catch (err) {
      return `cannot read cgroup mounts: ${(err as Error).message}`;
    }
    const base = (controller: string): string | undefined => {
      const m = mounts.find((x) => x.fstype === 'cgroup' && x.controllers.includes(controller));
      const path = own.get(controller);
      return m && path !== undefined ? join(m.path, path) : undefined;
    };
    const memory = base('memory');
    const pids = base('pids');
    if (!memory || !pids) return 'no cgroup v1 memory and pids hierarchies';
    // Writable: a group can be made and removed.
    for (const dir of [memory, pids]) {
      const probe = join(dir, `tv-probe-${process.pid}`);
      try {
        mkdirSync(probe);
        rmdirSync(probe);
      } catch (err) {
        return `cannot create groups under ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      }
    }
    return new VmProcessCgroups(memory, pids);
  }

  /** The groups of the VM whose folder is vmDir. */
  groups(vmName: string, vmDir: string): VmProcessGroups {
    const name = `tv-${vmName}-${createHash('sha256').update(vmDir).digest('hex').slice(0, 8)}`;
    return { memory: join(this.memoryBase, name), pids: join(this.pidsBase, name) };
  }

  /** Moves the process into its VM's groups with the limits for a guest of `memoryMiB`. */
  place(vmName: string, vmDir: string, pid: number, memoryMiB: number): VmProcessGroups {
    const g = this.groups(vmName, vmDir);
    for (const dir of [g.memory, g.pids]) if (!existsSync(dir)) mkdirSync(dir);
    try {
      // Charges made before the move (start-up) go with the process.
      writeText(join(g.memory, 'memory.move_charge_at_immigrate'), '3');
    } catch {
      /* not supported by this kernel: the start-up's pages stay charged to the daemon's group */
    }
    writeText(join(g.memory, 'memory.limit_in_bytes'), String((memoryMiB + VM_PROCESS_OVERHEAD_MIB) * MIB));
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
    for (const dir of [g.memory, g.pids]) {
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
    for (const base of [this.memoryBase, this.pidsBase]) {
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
