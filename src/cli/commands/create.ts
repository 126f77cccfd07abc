import type { VmView } from '../../host/actions.js';
import { defineVerb, printJson, UsageError } from '../verb.js';
import { settingParseOptions, settingsBody, settingsUsage, sizeOption } from '../settings-options.js';

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
  usage: `create NAME [--vcpus N] [--memory SIZE] [--image NAME | --kernel PATH [--initrd PATH]] [--cmdline TEXT]
                 [--firmware builtin|none|PATH] [--disk SIZE[:FORMAT]]... [--no-root-disk] [--autostart] [--start]

Creates a VM in state 'defined'. Without --kernel it boots the 'default' image with a thin qcow2 overlay of the
image's root filesystem as its first disk.
${settingsUsage(true)}`,
  options: {
    vcpus: { type: 'string' },
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
  },
  minArgs: 1,
  maxArgs: 1,
  async run({ values, positionals, client }) {
    const num = (v: string | undefined, what: string) => {
      if (v === undefined) return undefined;
      const m = /^(\d+)([MG]?)$/.exec(v);
      if (!m) throw new UsageError(`${what} takes a whole number, got ${v}`);
      return Number(m[1]) * (m[2] === 'G' ? 1024 : 1);
    };
    const abs = (p: string | undefined) => (p === undefined ? undefined : p.startsWith('/') ? p : `${process.cwd()}/${p}`);
    const firmware =
      values.firmware === undefined || values.firmware === 'builtin' || values.firmware === 'none'
        ? values.firmware
        : abs(values.firmware);
    const body = {
      name: positionals[0],
      vcpus: num(values.vcpus, '--vcpus'),
      memoryMiB: values.memory === undefined ? undefined : sizeOption('--memory', values.memory),
      image: values.image,
      kernel: abs(values.kernel),
      initrd: abs(values.initrd),
      cmdline: values.cmdline,
      firmware,
      disks: (values.disk ?? []).map(parseDisk),
      rootDisk: values['no-root-disk'] ? false : undefined,
      autostart: values.autostart,
      cpu: settingsBody(values, true).cpu,
      memory: settingsBody(values, true).memory,
    };
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
