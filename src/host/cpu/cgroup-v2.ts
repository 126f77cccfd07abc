/**
 * cgroup v2 enforcement with a threaded subtree (the kernel's cgroup-v2 "threaded" mode): the daemon moves into
 * `<its cgroup>/typevisor-<pid>`, which becomes a threaded domain, and each VM gets a threaded child
 * `vm-<name>` with cpu.weight (same 1..10000 scale as ours), cpu.max and cpuset.cpus; threads join it through
 * cgroup.threads. It needs the cpu controller delegated to the daemon's cgroup.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatCpuList } from './settings.js';
import {
  CFS_PERIOD_US,
  capToQuotaUs,
  CpuEnforceError,
  type CpuEnforcer,
  type EffectiveCpu,
  type PlacementResult,
  type VmCpuPlacement,
} from './enforcer.js';
import {
  daemonBaseGroup,
  parseCgroupMounts,
  parseProcCgroup,
  readText,
  removeGroup,
  sweepStaleGroups,
  writeText,
  writeTextAsync,
} from './cgroupfs.js';

export class CgroupV2Enforcer implements CpuEnforcer {
  readonly mechanism = 'cgroup-v2' as const;
  readonly detail: string;

  private constructor(
    private readonly root: string,
    private readonly hasCpuset: boolean,
  ) {
    this.detail = root;
  }

  static probe(
    mountinfo = readFileSync('/proc/self/mountinfo', 'utf8'),
    procCgroup = readFileSync('/proc/self/cgroup', 'utf8'),
  ): CgroupV2Enforcer | string {
    const mount = parseCgroupMounts(mountinfo).find((m) => m.fstype === 'cgroup2');
    const own = parseProcCgroup(procCgroup).get('');
    if (!mount || own === undefined) return 'no cgroup v2 hierarchy is mounted';
    const ownDir = daemonBaseGroup(join(mount.path, own));
    let controllers: string[];
    try {
      controllers = readText(join(ownDir, 'cgroup.controllers')).split(/\s+/).filter(Boolean);
    } catch (err) {
      return `cgroup v2 at ${ownDir} is not readable: ${(err as Error).message}`;
    }
    if (!controllers.includes('cpu'))
      return `cgroup v2 at ${ownDir} offers no cpu controller (controllers: ${controllers.join(' ') || 'none'})`;
    const hasCpuset = controllers.includes('cpuset');
    const root = join(ownDir, `typevisor-${process.pid}`);
    try {
      sweepStaleGroups(ownDir);
      if (!existsSync(root)) mkdirSync(root);
      // The no-internal-process rule: the parent may hand controllers down only once it holds no process, so
      // the whole daemon moves into its own group first.
      writeText(join(root, 'cgroup.procs'), String(process.pid));
      writeText(join(ownDir, 'cgroup.subtree_control'), hasCpuset ? '+cpu +cpuset' : '+cpu');
      return new CgroupV2Enforcer(root, hasCpuset);
    } catch (err) {
      return `cgroup v2 at ${ownDir} is not writable for a threaded subtree: ${(err as Error).message}`;
    }
  }

  refuse(s: EffectiveCpu): string | null {
    if (s.cpuset && !this.hasCpuset) return 'the cgroup v2 cpuset controller is not delegated to this daemon';
    return null;
  }

  open(vmName: string): VmCpuPlacement {
    const dir = join(this.root, `vm-${vmName}`);
    if (!existsSync(dir)) mkdirSync(dir);
    writeText(join(dir, 'cgroup.type'), 'threaded');
    // A threaded domain passes threaded controllers to its threaded children, with threads left in itself.
    writeText(join(this.root, 'cgroup.subtree_control'), this.hasCpuset ? '+cpu +cpuset' : '+cpu');
    const hasCpuset = this.hasCpuset;
    return {
      async addThreads(tids) {
        for (const tid of tids) await writeTextAsync(join(dir, 'cgroup.threads'), String(tid));
      },
      apply(s): PlacementResult {
        try {
          writeText(join(dir, 'cpu.weight'), String(s.weight));
          writeText(join(dir, 'cpu.max'), `${s.capPercent === null ? 'max' : capToQuotaUs(s.capPercent)} ${CFS_PERIOD_US}`);
          if (hasCpuset) writeText(join(dir, 'cpuset.cpus'), s.cpuset ? formatCpuList(s.cpuset) : '');
        } catch (err) {
          throw new CpuEnforceError(`cgroup v2 refused the setting: ${(err as Error).message}`);
        }
        return { runLoopCapPercent: null };
      },
      perCoreNs: () => null,
      close: () => removeGroup(dir),
    };
  }

  close(): void {
    removeGroup(this.root);
  }
}
