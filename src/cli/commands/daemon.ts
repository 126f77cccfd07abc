import { existsSync, readFileSync, statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultHome } from '../../host/home.js';
import { HostError } from '../../host/errors.js';
import {
  DaemonLockError,
  defaultVmMode,
  formatListen,
  ListenSpecError,
  parseListen,
  startDaemon,
  VM_MODES,
  type ListenSpec,
  type VmMode,
} from '../../host/daemon.js';
import { MECHANISM_CHOICES, MechanismUnavailableError, type MechanismChoice } from '../../host/cpu/probe.js';
import { pino } from 'pino';
import { BudgetError, checkBudget, defaultBudgetMiB, type MemoryBudget } from '../../host/memory/budget.js';
import { parseSizeMiB, SizeError } from '../../host/memory/settings.js';

export const summary = 'run the hypervisor daemon (REST API on a unix socket, optionally TCP)';

const HELP = `usage: typevisor daemon [--home DIR] [--listen unix:PATH|tcp:HOST:PORT]... [--shutdown-timeout SECONDS]
                        [--tls-cert FILE --tls-key FILE] [--allow-path DIR]... [--cpu-mechanism auto|cgroup-v2|cgroup-v1|fallback]
                        [--default-subnet CIDR] [--vm-mode process|thread] [--keep-vms-on-exit]
                        [--warm-workers N] [--vm-uid-base UID]
                        [--log-level trace|debug|info|warn|error] [--memory-budget SIZE] [--overcommit RATIO]

Owns the state directory (default $TYPEVISOR_HOME, else $XDG_DATA_HOME/typevisor, else ~/.local/share/typevisor)
and serves the API. Default listener: unix:<home>/typevisor.sock (mode 0600, no token needed).
TCP listeners require 'Authorization: Bearer <token>'; the token is in <home>/token (mode 0600).
With --tls-cert/--tls-key (PEM) TCP listeners speak HTTPS and WSS only, so the token never crosses the network
in clear; clients use --url https://HOST:PORT, and --ca FILE for a certificate no system CA signed.
API clients may name kernel, initrd and firmware files only under <home>/images, the built guest cache
(the 'default' image) and each --allow-path DIR (symlinks leading out and '..' are refused: 403 PATH_NOT_ALLOWED).
CPU settings are enforced with cgroup v2, else cgroup v1, else sched_setaffinity/setpriority and a cap in the
VM's run loop (--cpu-mechanism chooses one; a mechanism the host lacks is an error).
--memory-budget (e.g. 8G; default host RAM minus max(1 GiB, 10 %)) is what VMs may hold; the running VMs'
maximums may add up to budget × --overcommit (default 1.0) and their minimums to the budget: a start past
either is refused (409 MEMORY_BUDGET). Logs are JSON lines (pino)
on stderr. --default-subnet sets the 'default' NAT network's subnet (10.0.2.0/24 otherwise).
--vm-mode process (the default on Linux with /proc, else thread; or $TYPEVISOR_VM_MODE) runs each VM in a process
of its own, which outlives the daemon: a daemon that dies (kill -9, a crash) leaves its VMs running and the next
daemon on the same home reattaches to them (console, stats, control). --vm-mode thread runs each VM in a worker
thread of the daemon (VMs die with the daemon). Either way VM processes left running by an earlier daemon are
reattached.
--warm-workers N (default 1, or $TYPEVISOR_WARM_WORKERS; 0 turns it off) keeps N VM processes (process mode) or VM
workers (thread mode) started ahead of need, modules loaded and warmed up, so a VM start, restore or running clone
skips that start-up; none is kept while free host memory is under 512 MiB. An idle VM process ends with the daemon.
With it on, one network worker is kept ready too, so a network starting with its first VM skips its thread's start-up.
Run as root, each VM process drops to a uid and gid of its own (from --vm-uid-base, default 2000000000, upward;
recorded in the VM's folder) once its disks and boot files are open; not root, VM processes keep the daemon's user.
Stops every VM on SIGINT/SIGTERM; with --keep-vms-on-exit VM processes keep running for the next daemon.`;

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        home: { type: 'string' },
        listen: { type: 'string', multiple: true },
        'shutdown-timeout': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'allow-path': { type: 'string', multiple: true },
        'cpu-mechanism': { type: 'string' },
        'log-level': { type: 'string' },
        'default-subnet': { type: 'string' },
        'memory-budget': { type: 'string' },
        overcommit: { type: 'string' },
        'vm-mode': { type: 'string' },
        'keep-vms-on-exit': { type: 'boolean' },
        'warm-workers': { type: 'string' },
        'vm-uid-base': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`typevisor daemon: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let listen: ListenSpec[];
  try {
    listen = (values.listen ?? []).map(parseListen);
  } catch (err) {
    if (err instanceof ListenSpecError) {
      console.error(`typevisor daemon: ${err.message}`);
      return 2;
    }
    throw err;
  }
  const timeout = values['shutdown-timeout'] !== undefined ? Number(values['shutdown-timeout']) : undefined;
  if (timeout !== undefined && (!Number.isFinite(timeout) || timeout < 0)) {
    console.error('typevisor daemon: --shutdown-timeout takes a number of seconds');
    return 2;
  }
  let tls: { cert: string; key: string } | undefined;
  if (values['tls-cert'] !== undefined || values['tls-key'] !== undefined) {
    const problem = tlsProblem(values['tls-cert'], values['tls-key'], listen);
    if (problem) {
      console.error(`typevisor daemon: ${problem}`);
      return 2;
    }
    try {
      tls = { cert: readFileSync(values['tls-cert']!, 'utf8'), key: readFileSync(values['tls-key']!, 'utf8') };
      createSecureContext(tls); // a bad or mismatched pair is refused here, with the reason
    } catch (err) {
      console.error(`typevisor daemon: cannot use the TLS certificate/key: ${(err as Error).message}`);
      return 2;
    }
  }
  const allowed = allowPaths(values['allow-path']);
  const notDir = allowed.find((d) => !existsSync(d) || !statSync(d).isDirectory());
  if (notDir !== undefined) {
    console.error(`typevisor daemon: --allow-path ${notDir} is not a directory`);
    return 2;
  }
  const mechanism = values['cpu-mechanism'] ?? process.env.TYPEVISOR_CPU_MECHANISM ?? 'auto';
  if (!(MECHANISM_CHOICES as readonly string[]).includes(mechanism)) {
    console.error(`typevisor daemon: --cpu-mechanism takes one of ${MECHANISM_CHOICES.join(', ')}, got ${mechanism}`);
    return 2;
  }
  const level = values['log-level'] ?? 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(level)) {
    console.error(`typevisor daemon: --log-level takes trace, debug, info, warn, error, fatal or silent`);
    return 2;
  }
  let memoryBudget: MemoryBudget;
  try {
    const budgetMiB =
      values['memory-budget'] !== undefined ? parseSizeMiB(values['memory-budget'], '--memory-budget') : defaultBudgetMiB();
    const ratio = values.overcommit ?? '1';
    if (!/^\d+(\.\d+)?$/.test(ratio)) throw new BudgetError(`--overcommit takes a ratio like 1.5, got ${JSON.stringify(ratio)}`);
    memoryBudget = { budgetMiB, overcommit: Number(ratio) };
    checkBudget(memoryBudget);
  } catch (err) {
    if (err instanceof SizeError || err instanceof BudgetError) {
      console.error(`typevisor daemon: ${err.message}`);
      return 2;
    }
    throw err;
  }
  const vmMode = values['vm-mode'] ?? process.env.TYPEVISOR_VM_MODE ?? defaultVmMode();
  if (!(VM_MODES as readonly string[]).includes(vmMode)) {
    console.error(`typevisor daemon: --vm-mode takes process or thread, got ${JSON.stringify(vmMode)}`);
    return 2;
  }
  const warm = values['warm-workers'] ?? process.env.TYPEVISOR_WARM_WORKERS ?? '1';
  if (!/^\d{1,2}$/.test(warm) || Number(warm) > 16) {
    console.error(`typevisor daemon: --warm-workers takes a number from 0 to 16, got ${JSON.stringify(warm)}`);
    return 2;
  }
  const uidBase = values['vm-uid-base'];
  if (uidBase !== undefined && (!/^\d{4,10}$/.test(uidBase) || Number(uidBase) + 1_000_000 > 0xffff_fffe)) {
    console.error(`typevisor daemon: --vm-uid-base takes a uid from 1000 to 4293967294, got ${JSON.stringify(uidBase)}`);
    return 2;
  }
  const home = values.home ? values.home : defaultHome();
  const logger = pino({ level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
  const log = (line: string) => {
    // Lines about one VM start with its name ("vm1: ..."): keep it as a field.
    const m = /^([a-z0-9][a-z0-9-]*): (.*)$/s.exec(line);
    if (m) logger.info({ vm: m[1] }, m[2]);
    else logger.info(line);
  };
  let daemon;
  try {
    daemon = await startDaemon({
      home,
      listen,
      // Development/test hook: run VMs with another guest runtime module.
      runtimeModule: process.env.TYPEVISOR_RUNTIME_MODULE || undefined,
      shutdownTimeoutMs: timeout !== undefined ? timeout * 1000 : undefined,
      log,
      tls,
      allowPaths: allowed,
      logger,
      cpuMechanism: mechanism as MechanismChoice,
      defaultSubnet: values['default-subnet'],
      memoryBudget,
      vmMode: vmMode as VmMode,
      vmUidBase: uidBase === undefined ? undefined : Number(uidBase),
      keepVmsOnExit: values['keep-vms-on-exit'] === true,
      warmWorkers: Number(warm),
    });
  } catch (err) {
    if (err instanceof MechanismUnavailableError) {
      console.error(`typevisor daemon: --cpu-mechanism ${mechanism} is not available here: ${err.message}`);
      return 1;
    }
    if (err instanceof DaemonLockError) {
      console.error(`typevisor daemon: ${err.message}`);
      return 1;
    }
    if (err instanceof HostError) {
      console.error(`typevisor daemon: ${err.message}`);
      return 2;
    }
    throw err;
  }
  // One line on stdout so scripts (and tests) know the daemon is ready and where.
  console.log(`listening ${daemon.addresses.map(formatListen).join(' ')}`);
  const cpu = daemon.hypervisor.cpu.enforcer;
  log(`cpu allocation: ${cpu.mechanism} (${cpu.detail})`);
  log(`memory budget: ${memoryBudget.budgetMiB} MiB, overcommit ${memoryBudget.overcommit}`);
  return new Promise<number>((resolve) => {
    const stop = (sig: string) => {
      log(values['keep-vms-on-exit'] ? `${sig}: leaving VM processes running` : `${sig}: stopping VMs`);
      daemon.close().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

function tlsProblem(cert: string | undefined, key: string | undefined, listen: ListenSpec[]): string | undefined {
  if (cert === undefined || key === undefined) return '--tls-cert and --tls-key go together';
  if (!listen.some((l) => l.kind === 'tcp')) return 'TLS applies to TCP listeners: add --listen tcp:HOST:PORT';
  return undefined;
}

/** --allow-path directories, absolute (relative ones are taken from the current directory, as the shell meant). */
function allowPaths(dirs: string[] | undefined): string[] {
  return (dirs ?? []).map((d) => resolve(d));
}
