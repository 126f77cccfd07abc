/**
 * `typevisor run`: one VM in the foreground, no daemon. The terminal is the guest console (raw mode on a
 * TTY, Ctrl-A X quits as in QEMU); pipes work too, so scripts and tests can drive a guest.
 */
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { defaultVmConfig, validateVmConfig, type DiskConfig, type VmConfig, type FirmwareChoice } from '../../vm/config.js';
import { MachineLoop } from '../../vm/machine-loop.js';
import { checkKernelFile } from '../../host/kernel-file.js';
import { KERNEL_FORMAT_CHOICES, KernelFormatError, type KernelFormatChoice } from '../../machine/loaders/kernel-format.js';
import { aliasValue, parseCpusFlag, parseMemoryFlag, parseSizeMiB } from '../units.js';

export const summary = 'run one VM in the foreground (console on this terminal)';

const USAGE = `usage: typevisor run [options]

With no --kernel, boots the default guest (kernel + busybox initramfs) built by 'typevisor guest build',
also under --firmware FILE (OpenSBI then starts the default kernel).

  --kernel PATH          RISC-V Linux Image or riscv64 ELF; 'none' with --firmware FILE boots the firmware alone
  --kernel-format F      auto (default: Image or ELF, anything else is refused) | raw (load the bytes at RAM + 2 MiB,
                         e.g. U-Boot's S-mode u-boot.bin)
  --initrd PATH          initramfs
  --append STRING        kernel command line
  --firmware F           builtin (SBI in the hypervisor, default) | none (bare-metal ELF in M-mode) | PATH (OpenSBI fw_jump/fw_dynamic)
  --memory SIZE          RAM: 512M, 1G, or a plain number of MiB (default 256M)
  --cpus N, --vcpus N    harts, 1-8 (default 1)
  --drive SPEC           file=PATH[,format=raw|qcow2][,readonly=on][,serial=S] (repeatable)
  --deterministic-time   derive mtime from retired instructions (reproducible runs)
  --no-virtio            attach no virtio devices (rng, console, balloon)

Console: Ctrl-A X quits, Ctrl-A H helps, Ctrl-A Ctrl-A sends Ctrl-A.
Exit status: 0 on guest poweroff, the guest's code on a sifive,test failure, 70 on an emulator fault.`;

export class UsageError extends Error {}

/** "512" (MiB), "512M", "1G", "1048576K" (src/cli/units.ts, shared with `create`). */
export function parseMemory(s: string): number {
  try {
    return parseSizeMiB('--memory', s);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function parseDrive(spec: string): DiskConfig {
  const disk: DiskConfig = { path: '', format: 'raw', readOnly: false };
  let formatGiven = false;
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? 'file' : part.slice(0, eq);
    const value = eq < 0 ? part : part.slice(eq + 1);
    if (key === 'file') disk.path = value;
    else if (key === 'format') {
      if (value !== 'raw' && value !== 'qcow2') throw new UsageError(`--drive: format must be raw or qcow2, got '${value}'`);
      disk.format = value;
      formatGiven = true;
    } else if (key === 'readonly') disk.readOnly = value === 'on' || value === 'true' || value === '1';
    else if (key === 'serial') disk.serial = value;
    else if (key === 'if' || key === 'cache')
      continue; // accepted for QEMU muscle memory
    else throw new UsageError(`--drive: unknown option '${key}'`);
  }
  if (!disk.path) throw new UsageError('--drive needs file=PATH');
  if (!formatGiven && /\.qcow2$/i.test(disk.path)) disk.format = 'qcow2';
  return disk;
}

interface GuestArtifacts {
  kernel: string;
  initramfs: string;
  marker?: string;
}

async function defaultGuest(): Promise<GuestArtifacts | string> {
  const hint = 'the default guest is not built yet; build it with:\n\n  typevisor guest build\n\n(or pass --kernel/--initrd)';
  try {
    const mod = (await import('../../guests/index' + '.js')) as { guestArtifacts?: () => unknown };
    const a = (await mod.guestArtifacts?.()) as (Partial<GuestArtifacts> & { initrd?: string }) | undefined;
    const kernel = a?.kernel;
    const initramfs = a?.initramfs ?? a?.initrd;
    if (!kernel || !initramfs || !existsSync(kernel) || !existsSync(initramfs)) return hint;
    return { kernel, initramfs };
  } catch {
    return hint;
  }
}

export function parseRunArgs(argv: string[]): {
  config: VmConfig;
  help: boolean;
  useDefaultGuest: boolean;
  kernelFormat: KernelFormatChoice;
} {
  const { values } = parseArgs({
    args: argv,
    options: {
      kernel: { type: 'string' },
      initrd: { type: 'string' },
      append: { type: 'string' },
      firmware: { type: 'string' },
      memory: { type: 'string', short: 'm' },
      cpus: { type: 'string', short: 'c' },
      vcpus: { type: 'string' },
      smp: { type: 'string' },
      'kernel-format': { type: 'string' },
      drive: { type: 'string', multiple: true },
      'deterministic-time': { type: 'boolean' },
      'no-virtio': { type: 'boolean' },
      name: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  const fw = values.firmware ?? 'builtin';
  const firmware: FirmwareChoice =
    fw === 'builtin' ? { kind: 'builtin' } : fw === 'none' ? { kind: 'none' } : { kind: 'file', path: fw };
  let cpus: number;
  let memoryMiB: number;
  try {
    const c = aliasValue(values, ['cpus', 'vcpus', 'smp']);
    cpus = c ? parseCpusFlag(c.text, c.flag) : 1;
    memoryMiB = values.memory ? parseMemoryFlag(values.memory) : 256;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const kernelFormat = (values['kernel-format'] ?? 'auto') as KernelFormatChoice;
  if (!KERNEL_FORMAT_CHOICES.includes(kernelFormat))
    throw new UsageError(`--kernel-format takes ${KERNEL_FORMAT_CHOICES.join(' or ')}, got '${values['kernel-format']}'`);
  // --kernel none: boot external firmware alone (one carrying its own payload).
  const noKernel = values.kernel === 'none';
  if (noKernel && firmware.kind !== 'file') throw new UsageError('--kernel none needs --firmware FILE');
  const noVirtio = !!values['no-virtio'];
  const config = defaultVmConfig({
    name: values.name ?? 'run',
    cpus,
    memoryMiB,
    kernel: noKernel ? undefined : values.kernel,
    initrd: values.initrd,
    append: values.append,
    firmware,
    disks: (values.drive ?? []).map(parseDrive),
    deterministicTime: !!values['deterministic-time'],
    ...(noVirtio ? { rng: false, virtioConsole: false, balloon: false } : {}),
  });
  return { config, help: !!values.help, useDefaultGuest: !values.kernel && firmware.kind !== 'none', kernelFormat };
}

/** Why the kernel file cannot boot, or undefined (an unreadable file is reported when the images are read). */
async function kernelProblem(path: string, format: KernelFormatChoice): Promise<string | undefined> {
  try {
    await checkKernelFile(path, format);
    return undefined;
  } catch (err) {
    return err instanceof KernelFormatError ? err.message : undefined;
  }
}

const CTRL_A = 0x01;

export async function run(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseRunArgs>;
  try {
    parsed = parseRunArgs(argv);
  } catch (err) {
    console.error(`typevisor run: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.help) {
    console.log(USAGE);
    return 0;
  }
  const { config } = parsed;
  if (parsed.useDefaultGuest) {
    const guest = await defaultGuest();
    if (typeof guest === 'string') {
      console.error(`typevisor run: ${guest}`);
      return 1;
    }
    config.kernel = guest.kernel;
    config.initrd ??= guest.initramfs;
    config.append ??= 'console=ttyS0 earlycon=sbi';
  }
  const problems = validateVmConfig(config);
  if (problems.length) {
    console.error(`typevisor run: ${problems.join('; ')}`);
    return 2;
  }
  if (config.kernel !== undefined) {
    // Refused before boot: a file that is no kernel would otherwise run as raw code and fail silently.
    const problem = await kernelProblem(config.kernel, parsed.kernelFormat);
    if (problem) {
      console.error(`typevisor run: ${problem}`);
      return 1;
    }
  }

  let outputClosed = false;
  const loop = new MachineLoop(config, {
    onConsoleOutput: (bytes) => {
      if (!outputClosed) process.stdout.write(bytes);
    },
    onReboot: () => process.stderr.write('\r\n[typevisor: guest reboot]\r\n'),
  });
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  let escape = false;
  let quitRequested = false;
  const onInput = (chunk: Buffer): void => {
    const m = loop.machine;
    if (!tty) {
      m?.sendConsoleInput(chunk);
      return;
    }
    const pass: number[] = [];
    for (const b of chunk) {
      if (escape) {
        escape = false;
        const c = String.fromCharCode(b).toLowerCase();
        if (c === 'x') {
          quitRequested = true;
          process.stderr.write('\r\n[typevisor: terminated by Ctrl-A X]\r\n');
          loop.stop();
          return;
        } else if (c === 'h') process.stderr.write('\r\n[Ctrl-A X quit, Ctrl-A C show stats, Ctrl-A Ctrl-A send Ctrl-A]\r\n');
        else if (c === 'c' && m) process.stderr.write(`\r\n[${JSON.stringify(m.stats())}]\r\n`);
        else if (b === CTRL_A) pass.push(CTRL_A);
        continue;
      }
      if (b === CTRL_A) escape = true;
      else pass.push(b);
    }
    if (pass.length) m?.sendConsoleInput(pass);
  };
  if (tty) stdin.setRawMode(true);
  stdin.on('data', onInput);
  stdin.resume();
  const restoreTerminal = (): void => {
    stdin.off('data', onInput);
    if (tty) stdin.setRawMode(false);
    stdin.pause();
    stdin.unref?.();
  };

  // When the reader of our console goes away (`typevisor run | head`), stop the guest and leave the way a
  // program killed by SIGPIPE does, instead of dying on an unhandled EPIPE.
  const onStdoutError = (err: NodeJS.ErrnoException): void => {
    if (err.code !== 'EPIPE') throw err;
    outputClosed = true;
    loop.stop();
  };
  process.stdout.on('error', onStdoutError);

  try {
    const exit = await loop.run();
    restoreTerminal();
    switch (exit.kind) {
      case 'poweroff':
        return 0;
      case 'stopped':
        if (outputClosed) return 128 + 13; // SIGPIPE
        return quitRequested ? 0 : 1;
      case 'fail':
        process.stderr.write(`typevisor: guest reported failure code ${exit.code}\n`);
        return exit.code === 0 ? 1 : Math.min(exit.code, 255);
      case 'fault': {
        const recent = exit.recentPcs?.length
          ? `\n  recent pcs: ${exit.recentPcs.map((p) => '0x' + p.toString(16)).join(' ')}`
          : '';
        const traps = exit.recentTraps?.length ? `\n  last traps (oldest first):\n    ${exit.recentTraps.join('\n    ')}` : '';
        process.stderr.write(
          `\ntypevisor: emulator fault on hart ${exit.hartId} at pc 0x${exit.pc.toString(16)}: ${exit.message}${recent}${traps}\n`,
        );
        return 70;
      }
      default:
        return 1;
    }
  } catch (err) {
    restoreTerminal();
    console.error(`typevisor run: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
