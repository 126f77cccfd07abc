/**
 * How a VM process learns which VM it hosts (process mode). Two ways:
 *
 *   vm-process.js --init <vmdir>/vm-process-init.json
 *     spawned for one VM, in its folder, its output already going to the VM's log;
 *   vm-process.js --pooled '{"runtimeModule":...,"nice":...}'
 *     spawned ahead of need (the warm pool, src/vm/process-pool.ts): it loads the runtime module and warms it up
 *     (warm-up.ts) with no VM and no VM file open, says `pool-ready` on fd 3, and waits there for the daemon's
 *     `adopt` naming the init file. Adopted, it moves its output to the VM's log and its working directory to the
 *     VM's folder, and from there on runs exactly as a process spawned for that VM: it opens the VM's files, listens
 *     and drops its privileges (vm-process.ts). An idle pooled process exits when the daemon's end of fd 3 closes
 *     (the daemon exited or died): only a VM outlives the daemon, never an empty process.
 *
 * Either way fd 3 carries "ready\n" once the VM's socket listens, and is closed after it.
 */
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { libcFunction } from '../host/libc.js';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { PROCESS_FILES, type ProcessInit } from './process-protocol.js';
import { runtimeModuleUrl } from './worker-adopt.js';

/** The fd on which the spawning daemon talks to the process until it is ready. */
export const CONTROL_FD = 3;

/** argv of a pooled process after the entry module; the JSON is PooledProcessArgs. */
export const POOLED_FLAG = '--pooled';

export interface PooledProcessArgs {
  runtimeModule: string;
  nice: number;
}

/** Lines on fd 3 (one JSON object each, or the bare `ready`). */
export type PoolControlLine = { type: 'pool-ready' } | { type: 'adopt'; initFile: string };

export class VmProcessInitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VmProcessInitError';
  }
}

/** Reads and checks a VM process description (the file the daemon wrote). */
export function readInitFile(file: string): ProcessInit {
  let init: ProcessInit;
  try {
    init = JSON.parse(readFileSync(file, 'utf8')) as ProcessInit;
  } catch (err) {
    throw new VmProcessInitError(`cannot read ${file}: ${(err as Error).message}`);
  }
  if (typeof init?.socketPath !== 'string' || typeof init.vmDir !== 'string' || typeof init.config?.name !== 'string')
    throw new VmProcessInitError(`${file} is not a VM process description`);
  return init;
}

export function parsePooledArgs(text: string): PooledProcessArgs {
  let v: Partial<PooledProcessArgs>;
  try {
    v = JSON.parse(text) as Partial<PooledProcessArgs>;
  } catch {
    throw new VmProcessInitError(`${POOLED_FLAG} takes a JSON object, got ${JSON.stringify(text)}`);
  }
  if (typeof v?.runtimeModule !== 'string' || !Number.isInteger(v.nice))
    throw new VmProcessInitError(`${POOLED_FLAG} needs runtimeModule and nice`);
  return { runtimeModule: v.runtimeModule, nice: v.nice! };
}

/** Parses one line the daemon sent a pooled process; undefined for anything that is not an adopt. */
export function parseAdoptLine(line: string): string | undefined {
  try {
    const msg = JSON.parse(line) as Partial<PoolControlLine>;
    if (msg?.type === 'adopt' && typeof msg.initFile === 'string' && msg.initFile.startsWith('/')) return msg.initFile;
  } catch {
    /* not JSON */
  }
  return undefined;
}

export interface VmProcessStart {
  init: ProcessInit;
  /** True when the process came from the warm pool. */
  pooled: boolean;
  /** Tells the daemon the VM's socket listens, and closes fd 3. */
  signalReady(): void;
}

type Dup2 = (oldFd: number, newFd: number) => number;

function loadDup2(): Dup2 {
  const dup2 = libcFunction<Dup2>('int dup2(int oldfd, int newfd)');
  if (!dup2) throw new VmProcessInitError('dup2 cannot be loaded from libc (koffi)');
  return dup2;
}

/**
 * Points stdout and stderr at the VM's log (an adopted process's output went to the pool's log so far): the same
 * file a process spawned for the VM writes, and no descriptor of the pool's log stays open.
 */
function redirectOutput(logFile: string): void {
  const fd = openSync(logFile, 'a', 0o600);
  try {
    const dup2 = loadDup2();
    if (dup2(fd, 1) !== 1 || dup2(fd, 2) !== 2) throw new VmProcessInitError(`dup2 onto stdout/stderr failed`);
  } finally {
    closeSync(fd);
  }
}

/** What this process hosts: from --init at once, or (pooled) once warmed up, from the daemon's adopt. */
export async function receiveVmProcessInit(argv: string[], prepare: (args: PooledProcessArgs) => void): Promise<VmProcessStart> {
  const initAt = argv.indexOf('--init');
  if (initAt >= 0) {
    const file = argv[initAt + 1];
    if (!file) throw new VmProcessInitError('usage: vm-process --init FILE');
    return {
      init: readInitFile(file),
      pooled: false,
      signalReady: () => {
        try {
          writeSync(CONTROL_FD, 'ready\n');
          closeSync(CONTROL_FD);
        } catch {
          /* started by hand, without a ready pipe */
        }
      },
    };
  }
  const pooledAt = argv.indexOf(POOLED_FLAG);
  if (pooledAt < 0) throw new VmProcessInitError('usage: vm-process --init FILE | --pooled JSON');
  const args = parsePooledArgs(argv[pooledAt + 1] ?? '');
  prepare(args);
  // The slow part of a start, done while nothing waits for this process.
  const mod = (await import(runtimeModuleUrl(args.runtimeModule))) as { warmUp?: () => Promise<void> };
  try {
    await mod.warmUp?.();
  } catch {
    /* a process that could not warm up still hosts a VM: its first start only runs colder */
  }
  loadDup2(); // fails here, idle, rather than at adoption
  const control = new Socket({ fd: CONTROL_FD, readable: true, writable: true });
  let adopted = false;
  control.on('error', () => {});
  // The daemon is gone (exited, killed): an idle process has nothing to host and must not outlive it.
  control.on('close', () => {
    if (!adopted) process.exit(0);
  });
  control.write(JSON.stringify({ type: 'pool-ready' } satisfies PoolControlLine) + '\n');
  const initFile = await new Promise<string>((resolve) => {
    let buf = '';
    control.setEncoding('utf8');
    const onData = (d: string): void => {
      buf += d;
      if (buf.length > 64 * 1024) process.exit(2); // not a daemon speaking
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const file = parseAdoptLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (file) {
          adopted = true;
          control.off('data', onData);
          resolve(file);
          return;
        }
      }
    };
    control.on('data', onData);
  });
  const init = readInitFile(initFile);
  redirectOutput(join(init.vmDir, PROCESS_FILES.log));
  // Relative disk paths name files in the VM's folder, where a process spawned for the VM starts.
  process.chdir(init.vmDir);
  return {
    init,
    pooled: true,
    signalReady: () => {
      control.end('ready\n', () => control.destroy());
    },
  };
}
