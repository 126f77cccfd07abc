/**
 * cgroup v1 enforcement, as libvirt does it on v1 hosts: one group per VM under `typevisor-<daemon pid>` in the
 * cpu hierarchy (cpu.shares for the weight, cpu.cfs_quota_us/cfs_period_us for the cap), the cpuset hierarchy
 * (cpuset.cpus) and, when mounted, cpuacct (per-core CPU time). Threads are placed one by one through `tasks`.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { formatCpuList, parseCpuList } from './settings.js';
import {
  CFS_PERIOD_US,
  capToQuotaUs,
  CpuEnforceError,
  weightToShares,
  type CpuEnforcer,
  type EffectiveCpu,
  type PlacementResult,
  type VmCpuPlacement,
} from './enforcer.js';
import {
  parseCgroupMounts,
  parseProcCgroup,
  readText,
  removeGroup,
  sweepStaleGroups,
  writeText,
  writeTextAsync,
  type CgroupMount,
} from './cgroupfs.js';
import { readFileSync } from 'node:fs';

interface Roots {
  cpu: string;
  cpuset: string;
  cpuacct: string | null;
}

export class CgroupV1Enforcer implements CpuEnforcer {
  readonly mechanism = 'cgroup-v1' as const;
  readonly detail: string;
  private readonly allCpus: string;
  private readonly mems: string;

  private constructor(private readonly roots: Roots) {
    this.detail = [roots.cpu, roots.cpuset, roots.cpuacct].filter(Boolean).join(', ');
    this.allCpus = readText(join(roots.cpuset, 'cpuset.cpus'));
    this.mems = readText(join(roots.cpuset, 'cpuset.mems'));
  }

  /** The enforcer, or the reason this host offers no writable v1 cpu + cpuset hierarchies. */
  static probe(
    mountinfo = readFileSync('/proc/self/mountinfo', 'utf8'),
    procCgroup = readFileSync('/proc/self/cgroup', 'utf8'),
  ): CgroupV1Enforcer | string {
    const mounts = parseCgroupMounts(mountinfo).filter((m) => m.fstype === 'cgroup');
    const own = parseProcCgroup(procCgroup);
    const find = (c: string): CgroupMount | undefined => mounts.find((m) => m.controllers.includes(c));
    const cpu = find('cpu');
    const cpuset = find('cpuset');
    if (!cpu || !cpuset) return 'no cgroup v1 cpu and cpuset hierarchies are mounted';
    const groupDir = (m: CgroupMount, c: string): string => join(m.path, own.get(c) ?? '/', `typevisor-${process.pid}`);
    const roots: Roots = { cpu: groupDir(cpu, 'cpu'), cpuset: groupDir(cpuset, 'cpuset'), cpuacct: null };
    const acct = find('cpuacct');
    if (acct && acct !== cpu) roots.cpuacct = groupDir(acct, 'cpuacct');
    else if (acct === cpu) roots.cpuacct = roots.cpu;
    try {
      for (const dir of new Set([roots.cpu, roots.cpuset, roots.cpuacct].filter((d): d is string => d !== null))) {
        sweepStaleGroups(join(dir, '..'));
        if (!existsSync(dir)) mkdirSync(dir);
      }
      // A new cpuset group starts empty; it must have cores and memory nodes before any thread joins.
      const parent = join(roots.cpuset, '..');
      writeText(join(roots.cpuset, 'cpuset.cpus'), readText(join(parent, 'cpuset.cpus')));
      writeText(join(roots.cpuset, 'cpuset.mems'), readText(join(parent, 'cpuset.mems')));
      if (!existsSync(join(roots.cpu, 'cpu.cfs_quota_us'))) return 'the cpu hierarchy has no CFS bandwidth control';
      return new CgroupV1Enforcer(roots);
    } catch (err) {
      return `cgroup v1 is not writable: ${(err as Error).message}`;
    }
  }

  refuse(s: EffectiveCpu): string | null {
    if (s.cpuset) {
      const allowed = new Set(parseCpuList(this.allCpus));
      const bad = s.cpuset.find((c) => !allowed.has(c));
      if (bad !== undefined) return `core ${bad} is not in this daemon's cpuset (${this.allCpus})`;
    }
    return null;
  }

  open(vmName: string): VmCpuPlacement {
    const dirs = {
      cpu: join(this.roots.cpu, `vm-${vmName}`),
      cpuset: join(this.roots.cpuset, `vm-${vmName}`),
      cpuacct: this.roots.cpuacct && this.roots.cpuacct !== this.roots.cpu ? join(this.roots.cpuacct, `vm-${vmName}`) : null,
    };
    for (const d of [dirs.cpu, dirs.cpuset, dirs.cpuacct]) if (d && !existsSync(d)) mkdirSync(d);
    writeText(join(dirs.cpuset, 'cpuset.mems'), this.mems);
    writeText(join(dirs.cpuset, 'cpuset.cpus'), this.allCpus);
    const acctDir = this.roots.cpuacct === this.roots.cpu ? dirs.cpu : dirs.cpuacct;
    const allCpus = this.allCpus;
    return {
      async addThreads(tids) {
        for (const tid of tids) {
          for (const d of [dirs.cpu, dirs.cpuset, dirs.cpuacct]) if (d) await writeTextAsync(join(d, 'tasks'), String(tid));
        }
      },
      apply(s): PlacementResult {
        try {
          writeText(join(dirs.cpu, 'cpu.shares'), String(weightToShares(s.weight)));
          writeText(join(dirs.cpu, 'cpu.cfs_period_us'), String(CFS_PERIOD_US));
          writeText(join(dirs.cpu, 'cpu.cfs_quota_us'), s.capPercent === null ? '-1' : String(capToQuotaUs(s.capPercent)));
          writeText(join(dirs.cpuset, 'cpuset.cpus'), s.cpuset ? formatCpuList(s.cpuset) : allCpus);
        } catch (err) {
          throw new CpuEnforceError(`cgroup v1 refused the setting: ${(err as Error).message}`);
        }
        return { runLoopCapPercent: null };
      },
      perCoreNs() {
        if (!acctDir) return null;
        try {
          return readText(join(acctDir, 'cpuacct.usage_percpu')).split(/\s+/).map(Number);
        } catch {
          return null;
        }
      },
      close() {
        for (const d of [dirs.cpu, dirs.cpuset, dirs.cpuacct]) if (d) removeGroup(d);
      },
    };
  }

  close(): void {
    for (const d of new Set([this.roots.cpu, this.roots.cpuset, this.roots.cpuacct])) if (d) removeGroup(d);
  }
}
