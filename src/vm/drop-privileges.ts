/**
 * A VM process started by a root daemon gives up root before it runs guest code (docs/security.md): no
 * supplementary groups, the VM's own gid and uid (real, effective and saved, so root cannot be regained), no new
 * privileges through exec (PR_SET_NO_NEW_PRIVS), and a umask that keeps what it creates private. Setting the uid
 * from 0 to another clears the capability sets, so nothing of root is left. glibc applies setgroups/setgid/setuid
 * to every thread of the process (libuv's and V8's too).
 */
import { readFileSync } from 'node:fs';
import { libcFunction } from '../host/libc.js';

/** The unprivileged user a VM process runs as (src/host/vm-process-user.ts allocates it). */
export interface VmProcessUser {
  uid: number;
  gid: number;
}

export class DropPrivilegesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DropPrivilegesError';
  }
}

const PR_SET_NO_NEW_PRIVS = 38;

type Prctl = (option: number, a2: number, a3: number, a4: number, a5: number) => number;

function loadPrctl(): Prctl | undefined {
  return (
    libcFunction<Prctl>('int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)') ??
    undefined
  );
}

/** What /proc/self/status says of this process's credentials. */
export interface ProcessCredentials {
  uids: number[];
  gids: number[];
  groups: number[];
  noNewPrivs: boolean;
  capEff: bigint;
  capPrm: bigint;
}

export function parseProcStatusCredentials(text: string): ProcessCredentials {
  const field = (name: string): string => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
  const numbers = (s: string): number[] => (s ? s.split(/\s+/).map(Number) : []);
  return {
    uids: numbers(field('Uid')),
    gids: numbers(field('Gid')),
    groups: numbers(field('Groups')),
    noNewPrivs: field('NoNewPrivs') === '1',
    capEff: BigInt(`0x${field('CapEff') || '0'}`),
    capPrm: BigInt(`0x${field('CapPrm') || '0'}`),
  };
}

/**
 * Drops to `user` for good. Throws DropPrivilegesError when any step fails or the kernel's view afterwards is not
 * exactly that user with no capabilities: the caller must then exit rather than run the guest as root.
 * Returns a note when PR_SET_NO_NEW_PRIVS could not be set (koffi missing), which the caller logs.
 */
export function dropPrivileges(user: VmProcessUser): string | undefined {
  if (!Number.isInteger(user.uid) || !Number.isInteger(user.gid) || user.uid <= 0 || user.gid <= 0)
    throw new DropPrivilegesError(`refusing to run as uid ${user.uid} gid ${user.gid}`);
  let note: string | undefined;
  const prctl = loadPrctl();
  if (!prctl) note = 'PR_SET_NO_NEW_PRIVS not set: koffi could not load libc';
  else if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) !== 0) throw new DropPrivilegesError('prctl(PR_SET_NO_NEW_PRIVS) failed');
  try {
    process.setgroups?.([]);
    process.setgid?.(user.gid);
    process.setuid?.(user.uid);
  } catch (err) {
    throw new DropPrivilegesError(`could not become uid ${user.uid} gid ${user.gid}: ${(err as Error).message}`);
  }
  process.umask(0o077);
  const creds = parseProcStatusCredentials(readFileSync('/proc/self/status', 'utf8'));
  const only = (list: number[], v: number): boolean => list.length === 4 && list.every((x) => x === v);
  if (
    !only(creds.uids, user.uid) ||
    !only(creds.gids, user.gid) ||
    creds.groups.length !== 0 ||
    creds.capEff !== 0n ||
    creds.capPrm !== 0n
  )
    throw new DropPrivilegesError(
      `after the drop the process is Uid ${creds.uids.join(' ')} Gid ${creds.gids.join(' ')} Groups ${creds.groups.join(' ')}, with capabilities left`,
    );
  return note;
}
