/**
 * The unprivileged user of each VM process (process mode under a root daemon; docs/security.md).
 *
 * Every VM gets a uid of its own, with a gid of the same number, from a range no host account uses (default
 * 2,000,000,000 upward), recorded in its folder (vm-process-user.json, owned by root) and reused by every later
 * process of that VM, across daemon restarts and reattach. Per VM, not one shared user: two VM processes then
 * cannot open each other's files even where both could reach them.
 *
 * What the uid may touch, set by the daemon before it spawns the process and before each request that opens a
 * file: the VM's folder is root:<gid> 0710 (its process may pass through it, nobody else may, and only root writes
 * in it: vm.json stays the daemon's); the VM's own disks, their backing layers in the folder and the state files
 * it reads are <uid>:<gid> 0600, and the directories on the way <root>:<gid> 0710; a directory it writes a state
 * file into is <uid>:<gid> 0700; frozen layers under its disks are root's 0644 (clones of the VM read them too,
 * through descriptors). Nothing above the folder changes: the process keeps a descriptor of its folder
 * (src/vm/preopened-files.ts), so a home under /root (0700) works. A state saved outside the folder is written
 * into the folder's state-staging/ and moved out by the daemon; a state restored from outside is opened before the
 * drop. Any other file outside the folder is reached by path, so every directory above it must let others pass;
 * if one does not, the request fails with VM_FILES_UNREACHABLE naming it.
 */
import {
  chmodSync,
  chownSync,
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { writeJsonAtomic } from './atomic.js';
import { backingInfo } from './layer-merge.js';
import type { VmConfig } from '../vm/config.js';
import type { VmProcessUser } from '../vm/drop-privileges.js';
import { PROCESS_FILES } from '../vm/process-protocol.js';

export const DEFAULT_VM_UID_BASE = 2_000_000_000;
export const DEFAULT_VM_UID_COUNT = 1_000_000;

export class VmProcessUserError extends Error {
  constructor(
    readonly code: 'VM_FILES_UNREACHABLE' | 'VM_UIDS_EXHAUSTED',
    message: string,
  ) {
    super(message);
    this.name = 'VmProcessUserError';
  }
}

interface UserRecord extends VmProcessUser {
  /** The folder the uid was allocated for: a copied folder (a clone) gets a uid of its own. */
  vmDir: string;
}

export function inside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel !== '' && !rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel);
}

export class VmProcessUsers {
  constructor(
    readonly base = DEFAULT_VM_UID_BASE,
    readonly count = DEFAULT_VM_UID_COUNT,
  ) {
    if (!Number.isInteger(base) || base < 1000 || !Number.isInteger(count) || count < 1 || base + count > 0xffff_fffe)
      throw new RangeError(`bad VM uid range ${base}+${count}`);
  }

  /** Per-VM users when the daemon is root on Linux; else why VM processes keep the daemon's user. */
  static probe(base?: number, count?: number): VmProcessUsers | string {
    if (process.platform !== 'linux') return 'not Linux';
    if (process.getuid?.() !== 0)
      return `the daemon is not root (uid ${process.getuid?.()}): VM processes run as the daemon's user`;
    return new VmProcessUsers(base, count);
  }

  private readRecord(vmDir: string): UserRecord | undefined {
    let v: Partial<UserRecord>;
    try {
      v = JSON.parse(readFileSync(join(vmDir, PROCESS_FILES.user), 'utf8')) as Partial<UserRecord>;
    } catch {
      return undefined;
    }
    const ok = (n: unknown): n is number =>
      Number.isInteger(n) && (n as number) >= this.base && (n as number) < this.base + this.count;
    return ok(v.uid) && ok(v.gid) && typeof v.vmDir === 'string' ? { uid: v.uid, gid: v.gid, vmDir: v.vmDir } : undefined;
  }

  /** The VM's recorded user (a reattached process's), if any. */
  recorded(vmDir: string): VmProcessUser | undefined {
    const r = this.readRecord(vmDir);
    return r && r.vmDir === resolve(vmDir) ? { uid: r.uid, gid: r.gid } : undefined;
  }

  /** The VM's user: its record, or the lowest uid of the range no other VM folder of this home records. */
  userFor(vmDir: string): VmProcessUser {
    const dir = resolve(vmDir);
    const own = this.recorded(dir);
    if (own) return own;
    const used = new Set<number>();
    const vmsDir = dirname(dir);
    for (const entry of readdirSync(vmsDir)) {
      const other = join(vmsDir, entry);
      if (other === dir) continue;
      const r = this.readRecord(other);
      if (r && r.vmDir === other) used.add(r.uid);
    }
    let uid = this.base;
    while (used.has(uid)) uid++;
    if (uid >= this.base + this.count)
      throw new VmProcessUserError('VM_UIDS_EXHAUSTED', `all ${this.count} VM uids from ${this.base} are in use`);
    const rec: UserRecord = { uid, gid: uid, vmDir: dir };
    writeJsonAtomic(join(dir, PROCESS_FILES.user), rec, 0o600);
    return { uid, gid: uid };
  }

  /**
   * Before a VM process is spawned: allocates (or reuses) the VM's user, hands it the VM's files, and makes the
   * empty exit note its process writes into.
   */
  prepare(vmDir: string, config: VmConfig): VmProcessUser {
    const dir = resolve(vmDir);
    const user = this.userFor(dir);
    chownSync(dir, 0, user.gid);
    chmodSync(dir, 0o710);
    for (const d of config.disks) this.grantFile(dir, user, resolve(dir, d.path));
    const exit = join(dir, PROCESS_FILES.exit);
    closeSync(openSync(exit, 'w', 0o600));
    chownSync(exit, user.uid, user.gid);
    return user;
  }

  /**
   * Before a request that makes the VM process open files by path: each file (with its backing chain inside the
   * folder) becomes the VM's; `writeDirs` (where it creates a state file) become its own directories.
   */
  grant(vmDir: string, user: VmProcessUser, files: string[], writeDirs: string[] = []): void {
    const dir = resolve(vmDir);
    for (const f of files) {
      const target = resolve(dir, f);
      if (inside(dir, target)) this.grantFile(dir, user, target);
      else {
        const why = this.unreachable(target);
        if (why)
          throw new VmProcessUserError(
            'VM_FILES_UNREACHABLE',
            `the VM's process (uid ${user.uid}) cannot open ${target}: ${why}`,
          );
        chownSync(target, user.uid, user.gid);
        chmodSync(target, 0o600);
      }
    }
    for (const w of writeDirs) {
      const target = resolve(w);
      if (inside(dir, target)) this.openPath(dir, user, dirname(target));
      else {
        const why = this.unreachable(target);
        if (why)
          throw new VmProcessUserError(
            'VM_FILES_UNREACHABLE',
            `the VM's process (uid ${user.uid}) cannot write into ${target}: ${why}`,
          );
      }
      chownSync(target, user.uid, user.gid);
      chmodSync(target, 0o700);
    }
  }

  /** Why a directory's ancestors keep an unprivileged user out, if they do. */
  private unreachable(target: string): string | undefined {
    for (let d = dirname(target); ; d = dirname(d)) {
      const st = statSync(d);
      if ((st.mode & 0o001) === 0) return `${d} (mode ${(st.mode & 0o777).toString(8)}) cannot be passed by others`;
      if (d === dirname(d)) return undefined;
    }
  }

  /**
   * The file (the VM's, 0600) and, for a qcow2, its backing files inside the folder (root's, 0644: reachable only
   * through the folder, which only root and the VM's gid may pass). Files outside the folder are left alone.
   */
  private grantFile(dir: string, user: VmProcessUser, path: string): void {
    for (let p: string | undefined = path, depth = 0; p && depth < 17; depth++) {
      if (!inside(dir, p) || !existsSync(p)) return;
      this.openPath(dir, user, dirname(p));
      // The disk is the VM's; a layer under it is frozen and may be shared with clones (other uids), which
      // reach it only through a descriptor they opened before dropping root: root's, readable.
      chownSync(p, depth === 0 ? user.uid : 0, depth === 0 ? user.gid : 0);
      chmodSync(p, depth === 0 ? 0o600 : 0o644);
      let next: string | undefined;
      try {
        next = backingInfo(p)?.path;
      } catch {
        next = undefined;
      }
      p = next ? resolve(dirname(p), next) : undefined;
    }
  }

  /** Directories from the folder down to `to`: root:<gid> 0710, so the VM's process may pass. */
  private openPath(dir: string, user: VmProcessUser, to: string): void {
    if (to !== dir && !inside(dir, to)) return;
    const steps: string[] = [];
    for (let d = to; d !== dir; d = dirname(d)) steps.unshift(d);
    for (const d of steps) {
      const st = statSync(d);
      if (st.uid === user.uid) continue; // a directory the VM writes into already
      chownSync(d, 0, user.gid);
      chmodSync(d, 0o710);
    }
  }

  /**
   * Where the VM's process writes a state file that belongs outside its folder (`typevisor save DIR`): a directory
   * of its own in the folder; the daemon then moves the file out (moveStateFile), so no directory above DIR needs
   * to let the VM's uid pass.
   */
  stagingDir(vmDir: string, user: VmProcessUser): string {
    const dir = join(resolve(vmDir), 'state-staging');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chownSync(dir, user.uid, user.gid);
    chmodSync(dir, 0o700);
    return dir;
  }
}

/** Moves a finished state file to `to` (another file system: copied, synced, then removed). */
export function moveStateFile(from: string, to: string): void {
  try {
    renameSync(from, to);
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
  }
  copyFileSync(from, to);
  const fd = openSync(to, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  rmSync(from, { force: true });
}
