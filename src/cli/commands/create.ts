import { readFileSync } from 'node:fs';
import type { VmView } from '../../host/actions.js';
import { defineVerb, printJson, UsageError } from '../verb.js';
import { aliasValue, parseCpusFlag, parseMemoryFlag } from '../units.js';
import { settingParseOptions, settingsBody, settingsUsage } from '../settings-options.js';
import { parseNic, parsePublish } from '../net-options.js';

/** A file an option names, read here (the daemon may not see the client's files). */
function readOption(flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag} ${file}: ${(err as Error).message}`);
  }
}

export const summary = 'create a VM on the daemon (from an image, or a kernel)';

function parseDisk(s: string): { sizeMiB?: number; format: 'raw' | 'qcow2'; backing?: string } {
  // SIZE[:FORMAT] with SIZE like 512M, 2G or 100 (MiB), or backing=IMAGE[:SIZE]
  const m = /^(?:backing=([a-z0-9-]+)(?::(\d+)([MG]?))?|(\d+)([MG]?)(?::(raw|qcow2))?)$/.exec(s);
  if (!m) throw new UsageError(`--disk takes SIZE[:raw|qcow2] (e.g. 1G, 512M:raw) or backing=IMAGE[:SIZE], got ${s}`);
  const mib = (n: string | undefined, unit: string | undefined) =>
    n === undefined ? undefined : Number(n) * (unit === 'G' ? 1024 : 1);
  if (m[1]) return { backing: m[1], sizeMiB: mib(m[2], m[3]), format: 'qcow2' };
  return { sizeMiB: mib(m[4], m[5]), format: (m[6] as 'raw' | 'qcow2' | undefined) ?? 'qcow2' };
}

export const run = defineVerb({
  name: 'create',
  usage: `create NAME [--vcpus|--cpus N] [--memory SIZE] [--image NAME | --kernel PATH [--initrd PATH]] [--cmdline TEXT]
                 [--firmware builtin|none|PATH] [--disk SIZE[:FORMAT]]... [--no-root-disk] [--autostart] [--start]
                 [--nic network=NAME[,mac=MAC][,rate=RATE][,burst=SIZE][,rx-rate=RATE][,tx-rate=RATE][,pps=N]]...
                 [--no-nic] [--publish [HOSTIP:]HOSTPORT:GUESTPORT[/udp]]...
                 [--ssh-key FILE]... [--user-data FILE]

Creates a VM in state 'defined'. Without --kernel it boots the 'default' image with a thin qcow2 overlay of the
image's root filesystem as its first disk. --memory takes a size: 512M, 1G, or a plain number of MiB (default 256M).
Without --nic it gets one NIC on the 'default' NAT network. RATE is bytes per second (512K, 2M, 1G) or bits
(100mbit); --publish binds 127.0.0.1 unless HOSTIP is given.
--ssh-key (an OpenSSH public key file) and --user-data (a '#cloud-config' document or a '#!' script) give the VM
a first-boot configuration, applied once by images that read it (debian-riscv64): the keys go to the login user
('debian', with sudo, unless user-data names users). Publish guest port 22 to reach it with 'typevisor ssh'.
${settingsUsage(true)}`,
  options: {
    vcpus: { type: 'string' },
    cpus: { type: 'string', short: 'c' },
    memory: { type: 'string', short: 'm' },
    image: { type: 'string' },
    kernel: { type: 'string' },
    initrd: { type: 'string' },
    cmdline: { type: 'string' },
    firmware: { type: 'string' },
    disk: { type: 'string', multiple: true },
    'no-root-disk': { type: 'boolean' },
    autostart: { type: 'boolean' },
    start: { type: 'boolean' },
    ...settingParseOptions(true),
    nic: { type: 'string', multiple: true },
    'no-nic': { type: 'boolean' },
    publish: { type: 'string', multiple: true, short: 'p' },
    'ssh-key': { type: 'string', multiple: true },
    'user-data': { type: 'string' },
  },
  minArgs: 1,
  maxArgs: 1,
  async run({ values, positionals, client }) {
    const cpus = aliasValue(values, ['vcpus', 'cpus']);
    const abs = (p: string | undefined) => (p === undefined ? undefined : p.startsWith('/') ? p : `${process.cwd()}/${p}`);
    const firmware =
      values.firmware === undefined || values.firmware === 'builtin' || values.firmware === 'none'
        ? values.firmware
        : abs(values.firmware);
    const body = {
      name: positionals[0],
      vcpus: cpus === undefined ? undefined : parseCpusFlag(cpus.text, cpus.flag),
      memoryMiB: values.memory === undefined ? undefined : parseMemoryFlag(values.memory),
      image: values.image,
      kernel: abs(values.kernel),
      initrd: abs(values.initrd),
      cmdline: values.cmdline,
      firmware,
      disks: (values.disk ?? []).map(parseDisk),
      rootDisk: values['no-root-disk'] ? false : undefined,
      autostart: values.autostart,
      cpu: settingsBody(values, true).cpu,
      nics: values['no-nic'] ? [] : values.nic?.map(parseNic),
      publish: values.publish?.map(parsePublish),
      memory: settingsBody(values, true).memory,
      firstBoot:
        values['ssh-key'] || values['user-data'] !== undefined
          ? {
              sshAuthorizedKeys: values['ssh-key']?.map((f) => readOption('--ssh-key', f)),
              userData: values['user-data'] === undefined ? undefined : readOption('--user-data', values['user-data']),
            }
          : undefined,
    };
    if (values['no-nic'] && values.nic) throw new UsageError('--no-nic and --nic exclude each other');
    let vm = await client.json<VmView>('POST', '/vms', JSON.parse(JSON.stringify(body)));
    if (values.start) vm = (await client.json<{ vm: VmView }>('POST', `/vms/${vm.name}/actions/start`, {})).vm;
    if (values.json) printJson(vm);
    else
      console.log(
        `created ${vm.name} (${vm.config.cpus} vCPU, ${vm.config.memoryMiB} MiB${vm.image ? `, image ${vm.image}` : ''}): ${vm.state}`,
      );
    return 0;
  },
});
