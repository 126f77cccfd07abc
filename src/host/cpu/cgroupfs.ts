/** Small helpers over the cgroup filesystems: where each hierarchy is mounted, where this process sits in it. */
import { existsSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface CgroupMount {
  /** 'cgroup' (v1) or 'cgroup2'. */
  fstype: 'cgroup' | 'cgroup2';
  path: string;
  /** v1: the controllers of this hierarchy (cpu, cpuset, cpuacct, ...). */
  controllers: string[];
}

/** Parses /proc/self/mountinfo text into the cgroup mounts. */
export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const [fstype, , superOpts] = line.slice(sep + 3).split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const path = left[4]!.replace(/\\040/g, ' ');
    out.push({ fstype, path, controllers: fstype === 'cgroup' ? (superOpts ?? '').split(',') : [] });
  }
  return out;
}

/** Parses /proc/<pid>/cgroup: controller list (or '' for v2) → path. */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '') out.set('', m[2]!);
    for (const c of m[1]!.split(',')) if (c) out.set(c, m[2]!);
  }
  return out;
}

/**
 * The cgroup v2 group the daemon was started in: its current group, or that group's parent when the daemon has
 * moved itself into its leaf `typevisor-<pid>` already (the v2 CPU enforcer and the VM process groups both do).
 */
export function daemonBaseGroup(current: string, pid = process.pid): string {
  return basename(current) === `typevisor-${pid}` ? dirname(current) : current;
}

export function readText(path: string): string {
  return readFileSync(path, 'utf8').trim();
}

export function writeText(path: string, value: string): void {
  writeFileSync(path, value);
}

/**
 * writeText off the event loop. Moving a thread into a cgroup can wait for an RCU grace period in the kernel
 * (10-15 ms measured on cgroup v1 here), which must not hold up the daemon.
 */
export function writeTextAsync(path: string, value: string): Promise<void> {
  return writeFile(path, value);
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes a cgroup folder and its child groups (deepest first); groups that still hold threads stay. */
export function removeGroup(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeGroup(join(dir, e.name));
  try {
    rmdirSync(dir);
  } catch {
    /* still has threads, or already gone */
  }
}

/** Removes `typevisor-<pid>` groups left by daemons that died without cleaning up. */
export function sweepStaleGroups(parent: string): void {
  let entries: string[];
  try {
    entries = readdirSync(parent);
  } catch {
    return;
  }
  for (const e of entries) {
    const m = /^typevisor-(\d+)$/.exec(e);
    if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) removeGroup(join(parent, e));
  }
}
