/**
 * What the daemon and a VM process share beyond protocol.ts: the files in the VM's folder that let a VM outlive
 * the daemon, and the hello that starts every connection.
 *
 *   vm-process-init.json   what the process hosts (written by the daemon before spawning it)
 *   vm-process.json        who is running it: pid, start time, socket (written by the process once listening)
 *   vm-process-exit.json   how it ended, when it ended on its own (written by the process as it exits; a
 *                          process that dropped its privileges writes into the empty file the daemon made for it)
 *   vm-process-user.json   the uid and gid its VM's processes run as (a root daemon; src/host/vm-process-user.ts)
 *   vm-process.log         the process's stdout and stderr
 *   vm.sock                the channel (process-channel.ts); the process listens, the daemon connects
 */
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import type { VmConfig } from './config.js';
import type { VmProcessUser } from './drop-privileges.js';
import type { VmHostStatus } from './vm-host.js';

export interface ProcessInit {
  config: VmConfig;
  /** Module exporting createRuntime; absolute path or file URL. */
  runtimeModule: string;
  /** Niceness of the VM's main thread. */
  nice?: number;
  socketPath: string;
  vmDir: string;
  /**
   * The unprivileged user the process becomes once its files are open (a root daemon; src/host/vm-process-user.ts).
   * Absent: it keeps the daemon's user.
   */
  user?: VmProcessUser;
  /** The state file the first start restores from: opened before the drop (it may be in another VM's folder). */
  restoreFrom?: string;
  /**
   * The first start is that restore, and the process begins it as soon as it runs unprivileged, while the daemon
   * connects and says hello; the daemon's `start` with the same restore then gets its outcome.
   */
  restoreEarly?: { lazyRam: boolean };
}

export interface ProcessRuntimeFile {
  pid: number;
  /** /proc/<pid>/stat start time (clock ticks since boot): with the pid, names this process uniquely. */
  startTime: number;
  socketPath: string;
  /** When the process started (ISO time). */
  startedAt: string;
}

export interface ProcessExitFile {
  /**
   * poweroff: the guest powered off; fault: the machine failed; terminated: the process got SIGTERM; stopped: the
   * daemon asked it to stop (and may have died before it heard the answer).
   */
  kind: 'poweroff' | 'fault' | 'terminated' | 'stopped';
  message?: string;
  pid: number;
  at: string;
}

/** Daemon → process, first on every connection. A process answers only a hello naming its own VM. */
export interface HelloRequest {
  type: 'hello';
  id: number;
  name: string;
}

/** Process → daemon, once the requests received before the hello are done. */
export interface HelloReply {
  type: 'hello';
  id: number;
  ok: boolean;
  error?: string;
  name: string;
  pid: number;
  startTime: number;
  /** Thread ids running guest code (the process's main thread). */
  tids: number[];
  status: VmHostStatus;
}

export const PROCESS_FILES = {
  init: 'vm-process-init.json',
  runtime: 'vm-process.json',
  exit: 'vm-process-exit.json',
  log: 'vm-process.log',
  user: 'vm-process-user.json',
  socket: 'vm.sock',
} as const;

/** Longest unix socket path Linux takes (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

/**
 * The socket in the VM's folder, so it outlives the daemon and shares the folder's permissions. A folder too deep
 * for a socket path gets one under a private (0700) directory in the temporary folder, named by the VM's folder.
 */
export function vmSocketPath(vmDir: string): string {
  const inDir = join(vmDir, PROCESS_FILES.socket);
  if (Buffer.byteLength(inDir) <= MAX_SOCKET_PATH) return inDir;
  const dir = join(tmpdir(), `typevisor-${process.getuid?.() ?? 'user'}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return join(dir, `${createHash('sha256').update(vmDir).digest('hex').slice(0, 32)}.sock`);
}
