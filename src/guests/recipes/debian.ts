// Debian trixie riscv64 as a real guest OS: debootstrap fetches the packages from this machine's Debian archive
// (trixie's archive has riscv64), the second stage runs the packages' maintainer scripts under qemu-riscv64
// through binfmt_misc, and the tree becomes one ext4 partition of a qcow2 disk. The image boots like a real
// machine: OpenSBI, then U-Boot's distro boot, which reads /boot/extlinux/extlinux.conf (kept by u-boot-menu on
// every kernel install) and loads Debian's own kernel and initramfs from the disk.
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { createHash } from 'node:crypto';
import { debianArchiveUri } from '../apt.js';
import { closure, installedPackages, parseIndex, type DebStanza } from '../deb-closure.js';
import { repackUncompressed } from '../deb-repack.js';
import { query } from '../exec.js';
import { cacheRoot } from '../paths.js';
import type { BuildContext, Recipe } from '../recipe.js';

export const DEBIAN_SUITE = 'trixie';
export const DEBIAN_IMAGE_FILE = 'debian-riscv64.qcow2';
/** Virtual size of the image's disk; VMs get thin overlays, so unused space costs nothing. */
export const DEBIAN_DISK_GIB = 4;
export const DEBIAN_ROOT_LABEL = 'debian-root';
/** Text Debian's console prints once systemd has brought the system up (the getty on ttyS0). */
export const DEBIAN_LOGIN_MARKER = 'login:';
/** A local apt repository (flat: .debs plus Packages) built next to the image, for tests that must not use the internet. */
export const DEBIAN_REPO_DIR = 'repo';
/** A small package the repository holds for `apt-get install` tests. */
export const DEBIAN_REPO_TEST_PACKAGE = 'hello';
/** Where the repository's newer kernel comes from: its linux-image-riscv64 is newer than the image's. */
const KERNEL_UPGRADE_SUITE = `${DEBIAN_SUITE}-backports`;

const PARTITION_START_MIB = 1;

function packageList(recipeDir: string): string[] {
  return readFileSync(join(recipeDir, 'packages.list'), 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean);
}

/** binfmt_misc must know qemu-riscv64 (with the F flag, so the interpreter works inside the chroot). */
async function ensureBinfmt(ctx: BuildContext): Promise<void> {
  const dir = '/proc/sys/fs/binfmt_misc';
  if (!existsSync(join(dir, 'register'))) await ctx.run('mount', ['-t', 'binfmt_misc', 'binfmt_misc', dir]);
  if (!existsSync(join(dir, 'qemu-riscv64'))) await ctx.run('update-binfmts', ['--enable', 'qemu-riscv64']);
  const entry = readFileSync(join(dir, 'qemu-riscv64'), 'utf8');
  if (!/^enabled/m.test(entry) || !/^flags:.*F/m.test(entry))
    throw new Error(`binfmt_misc's qemu-riscv64 entry is not enabled with the F flag:\n${entry}`);
}

async function chroot(ctx: BuildContext, root: string, args: string[]): Promise<void> {
  await ctx.run('chroot', [root, ...args], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C.UTF-8' } });
}

/** A .deb from the archive, kept in the download cache; its SHA256 must match the index's. */
async function fetchDeb(ctx: BuildContext, s: DebStanza, cacheDir: string, into: string): Promise<void> {
  const name = basename(s.filename);
  const cached = join(cacheDir, name);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  if (!existsSync(cached) || sha(readFileSync(cached)) !== s.sha256) {
    ctx.log(`fetching ${name} (${(s.size / 1048576).toFixed(1)} MiB)`);
    const res = await fetch(`${debianArchiveUri()}/${s.filename}`);
    if (!res.ok) throw new Error(`${s.filename}: HTTP ${res.status}`);
    const body = Buffer.from(await res.arrayBuffer());
    if (sha(body) !== s.sha256) throw new Error(`${name}: SHA256 differs from the archive index`);
    writeFileSync(cached, body);
  }
  copyFileSync(cached, join(into, name));
}

/**
 * Downloads (never installs) what tests install in a guest from a repository the host serves: a small package
 * (apt in the image's tree resolves it against trixie), and a newer kernel: linux-image-riscv64 from
 * trixie-backports with every dependency the image lacks, resolved from the suite's index by deb-closure.ts
 * (this machine's mirror serves that index out of step with its signed InRelease, so apt refuses the suite).
 * Returns the newer kernel's release (uname -r).
 */
async function buildLocalRepo(ctx: BuildContext, root: string, debCache: string): Promise<string> {
  const repo = join(ctx.out, DEBIAN_REPO_DIR);
  mkdirSync(repo, { recursive: true });
  // apt in the tree resolves names with the build machine's resolver (the image's resolv.conf points at
  // systemd-resolved, which does not run in a chroot); the image's own file comes back afterwards.
  const resolv = join(root, 'etc/resolv.conf');
  const saved = lstatSync(resolv, { throwIfNoEntry: false });
  const link = saved?.isSymbolicLink() ? readlinkSync(resolv) : undefined;
  const text = saved?.isFile() ? readFileSync(resolv) : undefined;
  rmSync(resolv, { force: true });
  copyFileSync('/etc/resolv.conf', resolv);
  try {
    await chroot(ctx, root, ['apt-get', 'clean']);
    await chroot(ctx, root, ['apt-get', 'update', '-q']);
    await chroot(ctx, root, [
      'apt-get',
      'install',
      '-y',
      '-q',
      '--download-only',
      '--no-install-recommends',
      DEBIAN_REPO_TEST_PACKAGE,
    ]);
  } finally {
    rmSync(resolv);
    if (link !== undefined) symlinkSync(link, resolv);
    else if (text !== undefined) writeFileSync(resolv, text);
  }
  const archives = join(root, 'var/cache/apt/archives');
  for (const f of readdirSync(archives).filter((f) => f.endsWith('.deb'))) copyFileSync(join(archives, f), join(repo, f));

  const indexUrl = `${debianArchiveUri()}/dists/${KERNEL_UPGRADE_SUITE}/main/binary-riscv64/Packages.xz`;
  ctx.log(`reading ${indexUrl}`);
  const res = await fetch(indexUrl);
  if (!res.ok) throw new Error(`${indexUrl}: HTTP ${res.status}`);
  const xz = join(ctx.work, 'backports-Packages.xz');
  writeFileSync(xz, Buffer.from(await res.arrayBuffer()));
  await ctx.run('xz', ['-dk', xz]);
  const index = parseIndex(readFileSync(xz.slice(0, -3), 'utf8'));
  const installed = installedPackages(readFileSync(join(root, 'var/lib/dpkg/status'), 'utf8'));
  const kernelDebs = closure(index, installed, 'linux-image-riscv64');
  ctx.log(`newer kernel from ${KERNEL_UPGRADE_SUITE}: ${kernelDebs.map((s) => `${s.package}=${s.version}`).join(' ')}`);
  for (const s of kernelDebs) await fetchDeb(ctx, s, debCache, repo);
  // The guest unpacks these with dpkg on an emulated CPU, where xz costs tens of instructions per byte it
  // decodes. The modules package is 115 MB of xz around modules that are each xz-compressed already: the outer
  // xz saves ~1%, and decoding it took ~15 minutes of a loaded host. Such a package is repacked with an
  // uncompressed data.tar (same files, control data and md5sums: deb-repack.ts checks that, and apt checks the
  // repacked files against the Packages made below); the kernel's own files are untouched. A package that xz
  // shrinks well (the 36 MB kernel Image in 9.6 MB) stays as it is: its bytes would cost the guest as much to
  // receive and hash (apt) as to decode.
  const repacked: string[] = [];
  for (const s of kernelDebs) {
    const deb = join(repo, basename(s.filename));
    const installedKiB = Number(query('dpkg-deb', ['-f', deb, 'Installed-Size'])?.trim());
    if (!Number.isFinite(installedKiB)) throw new Error(`${basename(deb)}: no Installed-Size`);
    if (installedKiB * 1024 > 1.25 * s.size) continue;
    const { before, after } = await repackUncompressed(
      (cmd, args, opts) => ctx.run(cmd, args, opts),
      deb,
      join(ctx.work, 'repack'),
    );
    repacked.push(s.package);
    ctx.log(
      `repacked ${basename(deb)} with an uncompressed data.tar: ${(before / 1048576).toFixed(1)} → ${(after / 1048576).toFixed(1)} MiB`,
    );
  }
  if (!repacked.some((p) => p.startsWith('linux-modules-')))
    throw new Error(`no linux-modules package was repacked (repacked: ${repacked.join(' ') || 'none'})`);
  const debs = readdirSync(repo).filter((f) => f.endsWith('.deb'));
  const image = debs.map((f) => /^linux-image-(\d[^_]*-riscv64)_/.exec(f)?.[1]).find((v) => v !== undefined);
  if (!image) throw new Error(`the local repository got no newer kernel package: ${debs.join(' ')}`);
  if (!debs.some((f) => f.startsWith(`${DEBIAN_REPO_TEST_PACKAGE}_`)))
    throw new Error(`the local repository lacks ${DEBIAN_REPO_TEST_PACKAGE}`);
  // SHA256 only: apt computes every hash a package's record lists while it downloads it (MD5 and SHA1 too, by
  // default), on an emulated CPU, over 125 MB of kernel; it verifies with SHA256 alone anyway.
  await ctx.run(
    'sh',
    ['-c', 'dpkg-scanpackages --multiversion --hash sha256 . /dev/null > Packages 2>/dev/null && gzip -9nk Packages'],
    {
      cwd: repo,
    },
  );
  return image;
}

/** The second stage built the initramfs once, with the image's configuration (early/etc/initramfs-tools) in force. */
async function checkInitramfs(ctx: BuildContext, root: string): Promise<void> {
  const images = readdirSync(join(root, 'boot')).filter((f) => f.startsWith('initrd.img-'));
  if (images.length !== 1) throw new Error(`expected one initramfs in /boot, found: ${images.join(' ') || 'none'}`);
  const listing = join(ctx.work, 'initramfs.list');
  await ctx.run('sh', ['-c', `chroot "$1" lsinitramfs "/boot/$2" > "$3"`, 'sh', root, images[0]!, listing]);
  const files = readFileSync(listing, 'utf8');
  for (const m of ['virtio_blk', 'virtio_mmio', 'ext4'])
    if (!new RegExp(`/${m}\\.ko`).test(files)) throw new Error(`the initramfs ${images[0]} lacks ${m}`);
  if (files.includes('usr/lib/udev/hwdb.bin')) throw new Error(`the initramfs ${images[0]} holds udev's hwdb.bin`);
  // lz4's legacy frame (what the kernel's unpacker reads) follows the uncompressed cpio of modules.
  const image = readFileSync(join(root, 'boot', images[0]!));
  const earlyEnd = image.indexOf('TRAILER!!!');
  const lz4 = image.indexOf(Buffer.from([0x02, 0x21, 0x4c, 0x18]), earlyEnd);
  if (earlyEnd < 0 || lz4 < 0 || lz4 - earlyEnd > 1024) throw new Error(`the initramfs ${images[0]} is not lz4-compressed`);
  const modules = files.split('\n').filter((l) => l.endsWith('.ko') || l.endsWith('.ko.xz') || l.endsWith('.ko.zst'));
  // A MODULES=most initramfs holds well over a thousand modules; the list and its dependencies, a few dozen.
  if (modules.length > 100) throw new Error(`the initramfs holds ${modules.length} modules: MODULES=list was not in force`);
  ctx.log(`initramfs ${images[0]}: ${modules.length} modules`);
}

export const debian: Recipe = {
  name: 'debian',
  revision: 5,
  deps: [],
  packages: ['debootstrap', 'qemu-user-static', 'binfmt-support', 'e2fsprogs', 'fdisk', 'qemu-utils', 'dpkg-dev', 'xz-utils'],
  keyPackages: ['debootstrap', 'qemu-user-static'],
  inputs: ['debian', 'userland/sbin/typevisor-agent'],
  outputs: [DEBIAN_IMAGE_FILE, 'release.json', `${DEBIAN_REPO_DIR}/Packages`],
  async build(ctx) {
    await ensureBinfmt(ctx);
    const root = join(ctx.work, 'root');
    // Downloaded .debs are kept between builds: a rebuild after a recipe change fetches only what changed.
    const debs = join(cacheRoot(), 'debian-debs');
    mkdirSync(debs, { recursive: true });
    ctx.log(`debootstrap ${DEBIAN_SUITE} riscv64 (minbase + ${packageList(ctx.recipeDir).length} packages)`);
    await ctx.run('debootstrap', [
      '--arch=riscv64',
      '--variant=minbase',
      '--foreign',
      `--include=${packageList(ctx.recipeDir).join(',')}`,
      `--cache-dir=${debs}`,
      DEBIAN_SUITE,
      root,
      debianArchiveUri(),
    ]);
    // The initramfs configuration goes in before the second stage, whose kernel install builds the initramfs:
    // it is built once, small, instead of a full one that would be rebuilt afterwards (minutes under qemu-user).
    cpSync(join(ctx.recipeDir, 'early'), root, { recursive: true });
    ctx.log('debootstrap second stage (maintainer scripts under qemu-riscv64)');
    await chroot(ctx, root, ['/debootstrap/debootstrap', '--second-stage']);

    // Configuration files, the guest agent and its unit.
    cpSync(join(ctx.recipeDir, 'files'), root, { recursive: true });
    copyFileSync(join(ctx.recipesDir, 'userland/sbin/typevisor-agent'), join(root, 'usr/local/sbin/typevisor-agent'));
    chmodSync(join(root, 'usr/local/sbin/typevisor-agent'), 0o755);
    writeFileSync(join(root, 'etc/hostname'), 'debian\n');
    writeFileSync(join(root, 'etc/hosts'), '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n');
    writeFileSync(
      join(root, 'etc/apt/sources.list.d/debian.sources'),
      `Types: deb\nURIs: ${debianArchiveUri()}\nSuites: ${DEBIAN_SUITE}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`,
    );
    rmSync(join(root, 'etc/apt/sources.list'), { force: true });
    await chroot(ctx, root, [
      'systemctl',
      'enable',
      'systemd-networkd',
      'systemd-resolved',
      'ssh',
      'typevisor-agent',
      'typevisor-ssh-hostkeys',
      'typevisor-seed-init',
      'typevisor-seed-final',
    ]);
    // First boot must not stop at the console asking for a locale, a keymap or a root password, and /dev/hvc0
    // belongs to the agent: no login prompt may be started on it. openssh's sshd-keygen.service (`ssh-keygen -A`
    // on first boot) would make RSA and ECDSA keys too, minutes of an emulated CPU for keys sshd is not
    // configured to use: typevisor-ssh-hostkeys.service makes this VM's own ed25519 key instead.
    await chroot(ctx, root, [
      'systemctl',
      'mask',
      'systemd-firstboot.service',
      'serial-getty@hvc0.service',
      'sshd-keygen.service',
    ]);
    await checkInitramfs(ctx, root);
    // extlinux.conf from /etc/default/u-boot (a conffile of u-boot-menu, so it can only replace the package's
    // after the second stage; the kernel's install hook ran with the package's defaults).
    await chroot(ctx, root, ['u-boot-update']);
    const extlinux = readFileSync(join(root, 'boot/extlinux/extlinux.conf'), 'utf8');
    if (!extlinux.includes(`root=LABEL=${DEBIAN_ROOT_LABEL}`))
      throw new Error(`extlinux.conf lacks the root label:\n${extlinux}`);
    const kernels = extlinux.match(/linux \/boot\/vmlinu[xz]-(\S+)/g) ?? [];
    if (kernels.length === 0) throw new Error(`extlinux.conf names no kernel:\n${extlinux}`);
    const upgrade = await buildLocalRepo(ctx, root, debs);
    // Each VM gets its own identity on its first boot: ssh host keys are made there, and an empty machine-id
    // makes systemd generate one and commit it (systemd-machine-id-commit). Empty rather than "uninitialized",
    // which would also make that boot a ConditionFirstBoot one: `systemctl preset-all` over every unit (80 s
    // of guest time on the interpreter) for units the packages already enabled at install.
    writeFileSync(join(root, 'etc/machine-id'), '');
    rmSync(join(root, 'var/lib/dbus/machine-id'), { force: true });
    await ctx.run('sh', ['-c', `rm -f ${root}/etc/ssh/ssh_host_*`]);
    await chroot(ctx, root, ['apt-get', 'clean']);
    rmSync(join(root, 'var/lib/apt/lists'), { recursive: true, force: true });
    mkdirSync(join(root, 'var/lib/apt/lists/partial'), { recursive: true });
    // What the first boot would otherwise do because /etc and /var are older than /usr (ConditionNeedsUpdate):
    // the linker cache, system users and the journal's message catalog are made here, once, and
    // systemd-update-done stamps /etc and /var as up to date with this /usr.
    await chroot(ctx, root, ['ldconfig', '-X']);
    await chroot(ctx, root, ['systemd-sysusers']);
    await chroot(ctx, root, ['journalctl', '--update-catalog']);
    await chroot(ctx, root, ['/usr/lib/systemd/systemd-update-done']);
    for (const stamp of ['etc/.updated', 'var/.updated'])
      if (!existsSync(join(root, stamp))) throw new Error(`systemd-update-done left no /${stamp}`);
    const release = /VERSION_CODENAME=(\S+)/.exec(readFileSync(join(root, 'etc/os-release'), 'utf8'))?.[1];
    const kernel = /vmlinu[xz]-(\S+)/.exec(kernels[0]!)![1]!;

    // One ext4 partition at 1 MiB in an MBR disk, made without mounting anything, then converted to qcow2.
    const fsBytes = DEBIAN_DISK_GIB * 1024 - PARTITION_START_MIB;
    const fs = join(ctx.work, 'root.ext4');
    await ctx.run('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', DEBIAN_ROOT_LABEL, '-d', root, fs, `${fsBytes}M`]);
    await ctx.run('e2fsck', ['-fn', fs]);
    const disk = join(ctx.work, 'disk.raw');
    await ctx.run('truncate', ['-s', `${DEBIAN_DISK_GIB}G`, disk]);
    await ctx.run('sfdisk', ['--quiet', disk], { input: `label: dos\nstart=${PARTITION_START_MIB}MiB, type=83, bootable\n` });
    await ctx.run('dd', [`if=${fs}`, `of=${disk}`, 'bs=1M', `seek=${PARTITION_START_MIB}`, 'conv=sparse,notrunc', 'status=none']);
    rmSync(fs);
    await ctx.run('qemu-img', ['convert', '-O', 'qcow2', disk, join(ctx.out, DEBIAN_IMAGE_FILE)]);
    writeFileSync(
      join(ctx.out, 'release.json'),
      JSON.stringify(
        {
          os: 'debian',
          release,
          arch: 'riscv64',
          kernel,
          rootLabel: DEBIAN_ROOT_LABEL,
          boot: 'opensbi+u-boot',
          repo: { testPackage: DEBIAN_REPO_TEST_PACKAGE, upgradeKernel: upgrade },
        },
        null,
        2,
      ) + '\n',
    );
  },
};
