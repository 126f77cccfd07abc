import type { ImageView } from '../../host/image-store.js';
import { bytes, table } from '../format.js';
import { defineVerb, enc, printJson, UsageError } from '../verb.js';

export const summary = 'manage images: ls, info, build, import, rm';

const GUEST_OF: Record<string, string> = {
  default: 'firmware linux busybox initramfs rootfs',
  'debian-riscv64': 'firmware debian',
};

export const run = defineVerb({
  name: 'image',
  usage: `image ls | image info NAME | image build NAME | image rm NAME
       image import NAME --disk FILE [--kernel FILE [--initrd FILE] [--cmdline TEXT] | --boot firmware [--firmware FILE]] [--os TEXT] [--arch riscv64]

Built-in images: 'default' (Linux 6.1 + busybox, boots its kernel directly) and 'debian-riscv64' (Debian trixie,
boots like a real machine: OpenSBI, U-Boot, the disk's own extlinux.conf). 'image build' builds a built-in image
on this machine (cached). 'image import' copies a raw or qcow2 disk (and its kernel, or its firmware) into the
daemon's image store after checking them; the daemon reads the files, so they must be in a directory it allows.`,
  options: {
    disk: { type: 'string' },
    kernel: { type: 'string' },
    initrd: { type: 'string' },
    cmdline: { type: 'string' },
    firmware: { type: 'string' },
    boot: { type: 'string' },
    os: { type: 'string' },
    arch: { type: 'string' },
  },
  minArgs: 1,
  maxArgs: 2,
  async run({ values, positionals, client }) {
    const [sub, name] = positionals;
    const needName = () => {
      if (!name) throw new UsageError(`image ${sub} needs a NAME`);
      return name;
    };
    const abs = (p: string | undefined) => (p === undefined ? undefined : p.startsWith('/') ? p : `${process.cwd()}/${p}`);
    switch (sub) {
      case 'ls':
      case 'list': {
        const { images } = await client.json<{ images: ImageView[] }>('GET', '/images');
        if (values.json) printJson(images);
        else
          console.log(
            table(
              ['NAME', 'OS', 'BOOT', 'DISK', 'VMS', 'STATE'],
              images.map((i) => [
                i.name,
                i.os ?? '-',
                i.boot,
                i.disk ? `${bytes(i.disk.virtualBytes)} ${i.disk.format}` : '-',
                String(i.usedBy.length),
                i.available ? (i.builtin ? 'built-in' : 'imported') : 'not built',
              ]),
            ),
          );
        return 0;
      }
      case 'info': {
        const i = await client.json<ImageView>('GET', `/images/${enc(needName())}`);
        if (values.json) printJson(i);
        else {
          const rows: [string, string][] = [
            ['name', i.name],
            ['arch', i.arch],
            ['os', i.os ?? '-'],
            [
              'boots',
              i.boot === 'firmware' ? 'through firmware (OpenSBI, U-Boot, the disk’s boot config)' : 'its kernel directly',
            ],
            [
              'disk',
              i.disk
                ? `${i.disk.path} (${i.disk.format}, ${bytes(i.disk.virtualBytes)} virtual, ${bytes(i.disk.fileBytes)} on disk)`
                : '-',
            ],
            ['kernel', i.kernel ?? '-'],
            ['initrd', i.initrd ?? '-'],
            ['firmware', i.firmware ?? '-'],
            ['used by', i.usedBy.join(', ') || '-'],
            ['state', i.available ? (i.builtin ? 'built-in' : 'imported') : (i.note ?? 'not available')],
          ];
          const w = Math.max(...rows.map((r) => r[0].length));
          for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
        }
        return 0;
      }
      case 'build': {
        const guests = GUEST_OF[needName()];
        if (!guests) throw new UsageError(`only built-in images are built here (${Object.keys(GUEST_OF).join(', ')})`);
        const { run: guest } = await import('./guest.js');
        return guest(['build', ...guests.split(' ')]);
      }
      case 'import': {
        if (!values.disk) throw new UsageError('image import needs --disk FILE');
        if (values.boot !== undefined && values.boot !== 'kernel' && values.boot !== 'firmware')
          throw new UsageError(`--boot is kernel or firmware, got ${values.boot}`);
        if (!values.kernel && values.boot !== 'firmware')
          throw new UsageError('give --kernel FILE, or --boot firmware for a disk that boots itself through U-Boot');
        const body = {
          name: needName(),
          disk: abs(values.disk),
          kernel: abs(values.kernel),
          initrd: abs(values.initrd),
          cmdline: values.cmdline,
          firmware: abs(values.firmware),
          boot: values.boot,
          os: values.os,
          arch: values.arch,
        };
        const i = await client.json<ImageView>('POST', '/images', JSON.parse(JSON.stringify(body)));
        if (values.json) printJson(i);
        else
          console.log(
            `imported ${i.name} (${i.boot} boot${i.disk ? `, ${bytes(i.disk.virtualBytes)} ${i.disk.format} disk` : ''})`,
          );
        return 0;
      }
      case 'rm':
      case 'delete': {
        const r = await client.json<{ deleted: string }>('DELETE', `/images/${enc(needName())}`);
        if (values.json) printJson(r);
        else console.log(`deleted image ${r.deleted}`);
        return 0;
      }
      default:
        throw new UsageError(`unknown image command ${JSON.stringify(sub)} (ls, info, build, import, rm)`);
    }
  },
});
