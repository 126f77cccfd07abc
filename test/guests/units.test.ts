// Unit tests of the guest build machinery that need no built images: Kconfig handling, the cpio writer
// (checked against GNU cpio), the ELF check, cache keys and the progress display.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { cacheHash, cacheKeyInputs, GuestCache } from '../../src/guests/cache.js';
import { entriesFromDir, S_IFCHR, writeNewc } from '../../src/guests/cpio.js';
import { checkStaticRiscv64Elf, NotStaticRiscvElfError } from '../../src/guests/elfcheck.js';
import { GUEST_READY_MARKER, guestArtifacts, GuestsNotBuiltError, guestsBuilt } from '../../src/guests/index.js';
import { applyFragment, parseKconfig, unmetRequirements } from '../../src/guests/kconfig.js';
import { Progress } from '../../src/guests/progress.js';
import type { Recipe } from '../../src/guests/recipe.js';
import { stageUserland } from '../../src/guests/recipes/userland.js';
import { repoRoot } from '../helpers/paths.js';
import { requireTool } from '../helpers/require.js';

describe('kconfig', () => {
  it('reads set and unset options', () => {
    const m = parseKconfig('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_N=8\nCONFIG_S="x y"\n# comment\n');
    assert.deepEqual(
      [...m],
      [
        ['CONFIG_A', 'y'],
        ['CONFIG_B', 'n'],
        ['CONFIG_N', '8'],
        ['CONFIG_S', '"x y"'],
      ],
    );
  });

  it('lists every unmet requirement', () => {
    const frag = parseKconfig('CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_NR_CPUS=8\n');
    const final = parseKconfig('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_NR_CPUS=4\n');
    assert.deepEqual(unmetRequirements(frag, final), [
      'CONFIG_B=y wanted, got not set',
      'CONFIG_C should not be set, got y',
      'CONFIG_NR_CPUS>=8 wanted, got 4',
    ]);
    assert.deepEqual(unmetRequirements(frag, parseKconfig('CONFIG_A=y\nCONFIG_B=y\nCONFIG_NR_CPUS=16\n')), []);
  });

  it('applies a fragment over a .config', () => {
    const out = applyFragment(
      'CONFIG_A=y\nCONFIG_TC=y\n# CONFIG_STATIC is not set\nCONFIG_Z=y\n',
      parseKconfig('CONFIG_STATIC=y\n# CONFIG_TC is not set\n'),
    );
    assert.deepEqual(
      parseKconfig(out),
      new Map([
        ['CONFIG_A', 'y'],
        ['CONFIG_Z', 'y'],
        ['CONFIG_STATIC', 'y'],
        ['CONFIG_TC', 'n'],
      ]),
    );
  });

  it('the kernel fragment demands what the virt board and busybox need', () => {
    const frag = parseKconfig(readFileSync(join(repoRoot, 'guests/linux/typevisor.config'), 'utf8'));
    for (const sym of [
      '64BIT',
      'MMU',
      'SMP',
      'SOC_VIRT',
      'SERIAL_8250_CONSOLE',
      'SERIAL_OF_PLATFORM',
      'VIRTIO_MMIO',
      'VIRTIO_BLK',
      'VIRTIO_NET',
      'VIRTIO_CONSOLE',
      'HW_RANDOM_VIRTIO',
      'VIRTIO_BALLOON',
      'PAGE_REPORTING',
      'SIFIVE_PLIC',
      'RTC_DRV_GOLDFISH',
      'POWER_RESET_SYSCON',
      'POWER_RESET_SYSCON_POWEROFF',
      'BLK_DEV_INITRD',
      'EXT4_FS',
      'DEVTMPFS',
      'INET',
      'UNIX',
    ])
      assert.equal(frag.get('CONFIG_' + sym), 'y', sym);
    assert.ok(Number(frag.get('CONFIG_NR_CPUS')) >= 8);
    assert.equal(frag.get('CONFIG_MODULES'), 'n');
  });
});

describe('cpio newc writer', () => {
  it('writes an archive GNU cpio lists and extracts identically', () => {
    requireTool('cpio', 'cpio');
    const dir = mkdtempSync(join(tmpdir(), 'tv-cpio-'));
    try {
      const src = join(dir, 'src');
      mkdirSync(join(src, 'bin'), { recursive: true });
      writeFileSync(join(src, 'bin/hello'), 'echo hi\n', { mode: 0o755 });
      writeFileSync(join(src, 'odd'), 'xyz'); // a length that needs padding
      symlinkSync('/bin/hello', join(src, 'link'));
      const entries = entriesFromDir(src);
      entries.push({ path: 'console', mode: S_IFCHR | 0o600, rdev: { major: 5, minor: 1 } });
      const archive = writeNewc(entries);
      assert.equal(archive.length % 4, 0);
      const list = spawnSync('cpio', ['-itv', '--quiet'], { input: archive, encoding: 'utf8' });
      assert.equal(list.status, 0, list.stderr);
      const lines = list.stdout.trim().split('\n');
      assert.equal(lines.length, 5);
      assert.match(
        lines.find((l) => l.endsWith(' console'))!,
        /^crw-------.* 5,\s+1 /,
      );
      assert.match(
        lines.find((l) => l.includes(' link '))!,
        /^lrwxrwxrwx.* link -> \/bin\/hello$/,
      );
      assert.match(
        lines.find((l) => l.endsWith(' bin/hello'))!,
        /^-rwxr-xr-x/,
      );
      const out = join(dir, 'out');
      mkdirSync(out);
      const x = spawnSync('cpio', ['-id', '--quiet', '--no-absolute-filenames', 'bin/hello', 'odd'], {
        input: archive,
        cwd: out,
      });
      assert.equal(x.status, 0, String(x.stderr));
      assert.equal(readFileSync(join(out, 'bin/hello'), 'utf8'), 'echo hi\n');
      assert.equal(readFileSync(join(out, 'odd'), 'utf8'), 'xyz');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('static riscv64 ELF check', () => {
  function elf(machine: number, phTypes: number[]): Uint8Array {
    const b = new Uint8Array(64 + 56 * phTypes.length);
    const v = new DataView(b.buffer);
    b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
    v.setUint16(16, 2, true); // ET_EXEC
    v.setUint16(18, machine, true);
    v.setBigUint64(32, 64n, true); // e_phoff
    v.setUint16(54, 56, true);
    v.setUint16(56, phTypes.length, true);
    phTypes.forEach((t, i) => v.setUint32(64 + i * 56, t, true));
    return b;
  }
  it('accepts a riscv64 executable without PT_INTERP', () => {
    checkStaticRiscv64Elf(elf(243, [1, 1]));
  });
  it('rejects dynamic, foreign and truncated files', () => {
    assert.throws(() => checkStaticRiscv64Elf(elf(243, [3, 1])), /PT_INTERP/);
    assert.throws(() => checkStaticRiscv64Elf(elf(62, [1])), /e_machine is 62/);
    assert.throws(() => checkStaticRiscv64Elf(new Uint8Array(10)), NotStaticRiscvElfError);
    assert.throws(() => checkStaticRiscv64Elf(elf(243, [1]).slice(0, 80)), /out of bounds/);
  });
});

describe('cache keys and entries', () => {
  const recipe = (inputs: string[]): Recipe => ({
    name: 'initramfs',
    revision: 1,
    deps: ['busybox'],
    packages: [],
    keyPackages: [],
    inputs,
    outputs: ['x'],
    build: async () => undefined,
  });

  it('change with recipe files, their mode, revisions and dependency hashes, and only then', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tv-key-'));
    try {
      mkdirSync(join(dir, 'userland'));
      writeFileSync(join(dir, 'userland/init'), 'a');
      const h = () => cacheHash(cacheKeyInputs(recipe(['userland']), dir, { busybox: 'b1' }));
      const first = h();
      assert.equal(h(), first);
      writeFileSync(join(dir, 'userland/init'), 'b');
      const second = h();
      assert.notEqual(second, first);
      spawnSync('chmod', ['+x', join(dir, 'userland/init')]);
      assert.notEqual(h(), second);
      assert.notEqual(cacheHash(cacheKeyInputs(recipe(['userland']), dir, { busybox: 'b2' })), h());
      assert.notEqual(cacheHash(cacheKeyInputs({ ...recipe(['userland']), revision: 2 }, dir, { busybox: 'b1' })), h());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('commit an entry atomically and find it; guestArtifacts says to build when entries are missing', () => {
    const root = mkdtempSync(join(tmpdir(), 'tv-cache-'));
    try {
      const cache = new GuestCache(join(root, 'guests'));
      const hash = '0123456789abcdef';
      assert.equal(cache.lookup('linux', hash), undefined);
      const scratch = cache.scratch('linux', hash);
      writeFileSync(join(scratch, 'Image'), 'kernel');
      writeFileSync(join(scratch, 'config'), 'CONFIG_64BIT=y\n');
      assert.equal(cache.lookup('linux', hash), undefined, 'a scratch folder is not an entry');
      const key = cacheKeyInputs({ ...recipe([]), name: 'linux', deps: [] }, root, {});
      cache.commit('linux', hash, scratch, {
        name: 'linux',
        hash,
        key,
        outputs: ['Image', 'config'],
        builtAt: '',
        buildSeconds: 0,
      });
      assert.equal(cache.lookup('linux', hash)?.hash, hash);
      // A second finished build of the same key is dropped, unless it is a forced rebuild.
      const again = () => {
        const dir = cache.scratch('linux', hash);
        writeFileSync(join(dir, 'Image'), 'kernel 2');
        writeFileSync(join(dir, 'config'), 'CONFIG_64BIT=y\n');
        return dir;
      };
      const manifest = { name: 'linux' as const, hash, key, outputs: ['Image', 'config'], builtAt: '', buildSeconds: 0 };
      assert.equal(cache.commit('linux', hash, again(), manifest), false);
      assert.equal(readFileSync(join(cache.entryDir('linux', hash), 'Image'), 'utf8'), 'kernel');
      assert.equal(cache.commit('linux', hash, again(), manifest, true), true);
      assert.equal(readFileSync(join(cache.entryDir('linux', hash), 'Image'), 'utf8'), 'kernel 2');
      cache.setCurrent('linux', hash);
      assert.deepEqual(cache.current('linux'), { name: 'linux', hash });
      const env = { TYPEVISOR_CACHE: root };
      assert.equal(guestsBuilt(env), false);
      assert.throws(
        () => guestArtifacts(env),
        (e: unknown) =>
          e instanceof GuestsNotBuiltError && /run `typevisor guest build`/.test(e.message) && !e.missing.includes('linux'),
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('interrupted builds', () => {
  it('leave only a scratch folder, which the next build of that guest removes', () => {
    const root = mkdtempSync(join(tmpdir(), 'tv-prune-'));
    try {
      const cache = new GuestCache(root);
      // What a build killed mid-way leaves behind: a scratch folder named after a process that is gone.
      const dead = join(root, 'linux', '.build-0123456789abcdef-2147483646');
      mkdirSync(join(dead, 'work'), { recursive: true });
      const live = cache.scratch('linux', 'fedcba9876543210'); // ours: still running
      assert.equal(cache.lookup('linux', '0123456789abcdef'), undefined);
      cache.prune('linux', 'fedcba9876543210');
      assert.equal(existsSync(dead), false);
      assert.equal(existsSync(live), true);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('progress', () => {
  it('prints heartbeat lines with elapsed time and the latest activity when not a TTY', async () => {
    const lines: string[] = [];
    const p = new Progress({ write: (t) => lines.push(t), isTTY: false }, 30);
    p.begin('linux', 'abc');
    p.activity('CC kernel/fork.o');
    await new Promise((r) => setTimeout(r, 100));
    p.end();
    assert.equal(lines[0], 'linux: building (abc)\n');
    assert.ok(lines.length >= 2);
    assert.match(lines[1]!, /^linux: still building, \d+s elapsed \(CC kernel\/fork\.o\)\n$/);
  });
});

it('the init script prints the exported ready marker', () => {
  const init = readFileSync(join(repoRoot, 'guests/userland/sbin/typevisor-init'), 'utf8');
  assert.ok(init.includes(`echo "${GUEST_READY_MARKER}"`));
});

describe('guest userland networking', () => {
  const script = join(repoRoot, 'guests/userland/usr/share/udhcpc/default.script');

  it('both images carry the udhcpc script, executable, at the path init gives udhcpc', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tv-stage-'));
    try {
      const bb = join(dir, 'bb');
      mkdirSync(bb);
      writeFileSync(join(bb, 'busybox'), 'not really busybox');
      writeFileSync(join(bb, 'busybox.links'), '/bin/sh\n/sbin/udhcpc\n/sbin/ip\n');
      const dest = join(dir, 'root');
      stageUserland(bb, join(repoRoot, 'guests'), dest, ['init']);
      const staged = join(dest, 'usr/share/udhcpc/default.script');
      assert.equal(statSync(staged).mode & 0o111, 0o111);
      assert.equal(readFileSync(staged, 'utf8'), readFileSync(script, 'utf8'));
      const init = readFileSync(join(dest, 'sbin/typevisor-init'), 'utf8');
      const call = /^\s*udhcpc (.*)$/m.exec(init)?.[1] ?? '';
      assert.match(call, /-i eth0 /);
      assert.match(call, / -b /, 'udhcpc goes to the background instead of holding up boot');
      assert.match(call, / -s \/usr\/share\/udhcpc\/default\.script /);
      assert.match(init, /if \[ -e \/sys\/class\/net\/eth0 \]; then/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the udhcpc script applies a lease (address, routes, resolv.conf) and clears it (checked with dash and a fake ip)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tv-dhcp-'));
    try {
      mkdirSync(join(dir, 'bin'));
      const log = join(dir, 'ip.log');
      // The fake ip records its arguments; `addr show` lists nothing, so the lease's address is new, and there
      // is no default route to delete.
      writeFileSync(join(dir, 'bin/ip'), `#!/bin/sh\necho "$*" >>"${log}"\ncase "$*" in *"route del"*) exit 2 ;; esac\n`, {
        mode: 0o755,
      });
      const resolv = join(dir, 'resolv.conf');
      const run = (event: string, lease: Record<string, string>) => {
        writeFileSync(log, '');
        const r = spawnSync('dash', [script, event], {
          env: { PATH: `${join(dir, 'bin')}:/usr/bin:/bin`, UDHCPC_RESOLV_CONF: resolv, interface: 'eth0', ...lease },
          encoding: 'utf8',
        });
        assert.equal(r.status, 0, r.stderr);
        return readFileSync(log, 'utf8').trim().split('\n').filter(Boolean);
      };
      const bound = run('bound', {
        ip: '10.0.2.15',
        mask: '24',
        broadcast: '10.0.2.255',
        router: '10.0.2.2 10.0.2.1',
        dns: '10.0.2.3 1.1.1.1',
        domain: 'example.test',
        mtu: '1500',
      });
      assert.deepEqual(bound, [
        'link set dev eth0 mtu 1500',
        '-4 addr show dev eth0',
        '-4 addr flush dev eth0',
        '-4 addr add 10.0.2.15/24 broadcast 10.0.2.255 dev eth0',
        '-4 route del default dev eth0',
        '-4 route add default via 10.0.2.2 dev eth0 metric 0',
        '-4 route add default via 10.0.2.1 dev eth0 metric 1',
      ]);
      assert.equal(readFileSync(resolv, 'utf8'), 'search example.test\nnameserver 10.0.2.3\nnameserver 1.1.1.1\n');
      assert.deepEqual(run('deconfig', {}), ['-4 addr flush dev eth0', 'link set dev eth0 up']);
      assert.deepEqual(run('leasefail', {}), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
