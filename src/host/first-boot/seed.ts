/**
 * The seed disk a VM with first-boot configuration gets: a read-only raw disk with virtio serial 'cidata' that
 * holds a POSIX tar archive (NoCloud's meta-data and user-data, plus typevisor-firstboot.sh, the configuration
 * translated into shell). The Debian image's typevisor-seed units unpack it and run the script's `init` stage
 * before the network comes up and its `final` stage once it is up, each once per instance-id.
 */
import { shellQuote as q, type FirstBootConfig } from './config.js';

/** The virtio-blk serial the guest looks for (NoCloud's volume label). */
export const SEED_SERIAL = 'cidata';
export const SEED_FILE = 'seed.tar';

/** The shell the guest runs: `sh typevisor-firstboot.sh init|final`. */
export function renderFirstBootScript(cfg: FirstBootConfig): string {
  const init: string[] = [];
  const final: string[] = [];
  init.push(`echo ${q(cfg.hostname)} >/etc/hostname`, `echo ${q(cfg.hostname)} >/proc/sys/kernel/hostname`);
  init.push(
    `if grep -q '^127\\.0\\.1\\.1' /etc/hosts; then sed -i ${q(`s/^127\\.0\\.1\\.1.*/127.0.1.1\t${cfg.hostname}/`)} /etc/hosts;` +
      ` else echo ${q(`127.0.1.1\t${cfg.hostname}`)} >>/etc/hosts; fi`,
  );
  for (const u of cfg.users) {
    const gecos = u.gecos !== undefined ? ` -c ${q(u.gecos)}` : '';
    init.push(`id -u ${q(u.name)} >/dev/null 2>&1 || useradd -m -U -s ${q(u.shell)}${gecos} ${q(u.name)}`);
    for (const g of u.groups)
      init.push(`getent group ${q(g)} >/dev/null || groupadd ${q(g)}`, `usermod -aG ${q(g)} ${q(u.name)}`);
    if (u.sshAuthorizedKeys.length) {
      init.push(
        `home=$(getent passwd ${q(u.name)} | cut -d: -f6)`,
        `install -d -m 700 -o ${q(u.name)} -g ${q(u.name)} "$home/.ssh"`,
        `printf '%s\\n' ${u.sshAuthorizedKeys.map(q).join(' ')} >>"$home/.ssh/authorized_keys"`,
        `chown ${q(u.name)}:${q(u.name)} "$home/.ssh/authorized_keys"`,
        `chmod 600 "$home/.ssh/authorized_keys"`,
      );
    }
    if (u.sudo) {
      const file = `/etc/sudoers.d/90-typevisor-${u.name}`;
      init.push(
        `printf '%s\\n' ${q(`${u.name} ${u.sudo}`)} >${q(file)}.tmp`,
        `chmod 440 ${q(file)}.tmp`,
        `visudo -cqf ${q(file)}.tmp && mv ${q(file)}.tmp ${q(file)} || { rm -f ${q(file)}.tmp; echo "bad sudo rule for ${u.name}" >&2; }`,
      );
    }
  }
  if (cfg.network.kind === 'static') {
    const n = cfg.network;
    const lines = [
      '[Match]',
      n.interface ? `Name=${n.interface}` : 'Type=ether',
      '',
      '[Network]',
      'LinkLocalAddressing=no',
      ...n.addresses.map((a) => `Address=${a}`),
      ...(n.gateway ? [`Gateway=${n.gateway}`] : []),
      ...n.dns.map((d) => `DNS=${d}`),
    ];
    // Sorts before the image's 80-dhcp.network, so it wins for the NICs it matches.
    init.push(`printf '%s\\n' ${lines.map(q).join(' ')} >/etc/systemd/network/10-typevisor-static.network`);
  }
  if (!cfg.keepImageSources) init.push('rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*');
  for (const s of cfg.aptSources) init.push(`printf '%s\\n' ${q(s.line)} >${q(`/etc/apt/sources.list.d/${s.name}.list`)}`);
  for (const f of cfg.writeFiles) {
    init.push(`mkdir -p "$(dirname ${q(f.path)})"`, `printf '%s' ${q(f.content)} >${q(f.path)}`);
    if (f.permissions) init.push(`chmod ${f.permissions} ${q(f.path)}`);
    if (f.owner) init.push(`chown ${q(f.owner)} ${q(f.path)}`);
  }

  const apt = 'DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600';
  if (cfg.packageUpdate) final.push(`${apt} update`);
  if (cfg.packages.length) final.push(`${apt} install -y ${cfg.packages.map(q).join(' ')}`);
  if (cfg.commands.length) {
    final.push(
      `printf '%s\\n' ${['#!/bin/sh', ...cfg.commands].map(q).join(' ')} >/var/lib/typevisor/runcmd`,
      'chmod 700 /var/lib/typevisor/runcmd',
      '/var/lib/typevisor/runcmd',
    );
  }
  if (cfg.script !== undefined) {
    final.push(
      `printf '%s' ${q(cfg.script)} >/var/lib/typevisor/user-script`,
      'chmod 700 /var/lib/typevisor/user-script',
      '/var/lib/typevisor/user-script',
    );
  }
  const fn = (name: string, body: string[]) => `${name}() {\n  :\n${body.map((l) => `  ${l}\n`).join('')}}\n`;
  return (
    "#!/bin/sh\n# Written by typevisor from the VM's first-boot configuration (see meta-data and user-data).\nset -eu\nmkdir -p /var/lib/typevisor\n" +
    fn('init', init) +
    fn('final', final) +
    'case "${1:-}" in\n  init) init ;;\n  final) final ;;\n  *) echo "usage: $0 init|final" >&2; exit 2 ;;\nesac\n'
  );
}

/** NoCloud's meta-data. */
export function renderMetaData(instanceId: string, cfg: FirstBootConfig): string {
  return `instance-id: ${instanceId}\nlocal-hostname: ${cfg.hostname}\n`;
}

const BLOCK = 512;

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** A ustar archive of regular files (names under 100 bytes), padded to whole 512-byte blocks. */
export function tarArchive(files: { name: string; data: Buffer; mode?: number }[], mtime = 0): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    if (Buffer.byteLength(f.name) >= 100) throw new Error(`tar: name too long: ${f.name}`);
    const h = Buffer.alloc(BLOCK);
    h.write(f.name, 0, 'utf8');
    h.write(octal(f.mode ?? 0o644, 8), 100, 'ascii');
    h.write(octal(0, 8), 108, 'ascii');
    h.write(octal(0, 8), 116, 'ascii');
    h.write(octal(f.data.length, 12), 124, 'ascii');
    h.write(octal(mtime, 12), 136, 'ascii');
    h.fill(' ', 148, 156);
    h.write('0', 156, 'ascii');
    h.write('ustar\0', 257, 'ascii');
    h.write('00', 263, 'ascii');
    h.write('root', 265, 'ascii');
    h.write('root', 297, 'ascii');
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
    parts.push(h, f.data, Buffer.alloc((BLOCK - (f.data.length % BLOCK)) % BLOCK));
  }
  // The end-of-archive marker, then padding to a 10 KiB record as tar(1) writes it.
  parts.push(Buffer.alloc(2 * BLOCK));
  const body = Buffer.concat(parts);
  const record = 20 * BLOCK;
  return Buffer.concat([body, Buffer.alloc((record - (body.length % record)) % record)]);
}

/** The seed disk's bytes. */
export function seedImage(instanceId: string, cfg: FirstBootConfig): Buffer {
  const now = Math.floor(Date.now() / 1000);
  return tarArchive(
    [
      { name: 'meta-data', data: Buffer.from(renderMetaData(instanceId, cfg)) },
      { name: 'user-data', data: Buffer.from(cfg.userData) },
      { name: 'typevisor-firstboot.sh', data: Buffer.from(renderFirstBootScript(cfg)), mode: 0o755 },
    ],
    now,
  );
}
