/**
 * First-boot configuration without a guest: the cloud-config YAML subset, the typed parse with one named error
 * per bad field, the shell the guest runs (checked by sh -n and by running its stages against a scratch root
 * through a fake PATH), and the seed archive (read back by tar(1)).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseYamlSubset, YamlError } from '../../src/host/first-boot/yaml-subset.js';
import { DEFAULT_LOGIN_USER, FirstBootError, parseFirstBoot } from '../../src/host/first-boot/config.js';
import { renderFirstBootScript, seedImage } from '../../src/host/first-boot/seed.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHm6b1T2e3Gf9m4b5dQ2Z0yM8Zr3qZxkQ2b4k5Xn8p1s test@host';

const USER_DATA = `#cloud-config
# a comment
hostname: web-1
users:
  - default
  - name: alice
    sudo: ALL=(ALL) NOPASSWD:ALL
    groups: [adm, sudo]
    ssh_authorized_keys:
      - ${KEY}
apt:
  preserve_sources_list: false
  sources:
    local:
      source: "deb [trusted=yes] http://10.0.2.2:8080/ ./"
packages:
- hello
write_files:
  - path: /etc/motd
    permissions: '0644'
    content: |
      line one
      it's "two"
runcmd:
  - echo done > /var/tmp/runcmd-ran
  - [touch, "/var/tmp/with space"]
`;

test('the YAML subset: mappings, sequences at and below their key, flow lists, quotes, block scalars, comments', () => {
  const doc = parseYamlSubset(USER_DATA.slice(USER_DATA.indexOf('\n') + 1)) as Record<string, unknown>;
  assert.equal(doc.hostname, 'web-1');
  assert.deepEqual(doc.packages, ['hello']);
  const users = doc.users as unknown[];
  assert.equal(users[0], 'default');
  assert.deepEqual(users[1], {
    name: 'alice',
    sudo: 'ALL=(ALL) NOPASSWD:ALL',
    groups: ['adm', 'sudo'],
    ssh_authorized_keys: [KEY],
  });
  assert.deepEqual(doc.apt, {
    preserve_sources_list: false,
    sources: { local: { source: 'deb [trusted=yes] http://10.0.2.2:8080/ ./' } },
  });
  assert.deepEqual(doc.write_files, [{ path: '/etc/motd', permissions: '0644', content: 'line one\nit\'s "two"\n' }]);
  assert.deepEqual(doc.runcmd, ['echo done > /var/tmp/runcmd-ran', ['touch', '/var/tmp/with space']]);
  assert.deepEqual(parseYamlSubset('a: |-\n  x\n\n  y\nb: >\n  p\n  q\n'), { a: 'x\n\ny', b: 'p q\n' });
  assert.deepEqual(parseYamlSubset("k: 'it''s'   # trailing\nn: ~\n"), { k: "it's", n: null });
});

test('the YAML subset refuses what it does not understand, naming the line', () => {
  assert.throws(
    () => parseYamlSubset('a: 1\n  b: 2\n'),
    (e: unknown) => e instanceof YamlError && e.line === 2,
  );
  assert.throws(() => parseYamlSubset('a: &anchor x\n'), YamlError);
  assert.throws(() => parseYamlSubset('a: {b: 1}\n'), YamlError);
  assert.throws(() => parseYamlSubset('a: 1\na: 2\n'), /duplicate key 'a'/);
  assert.throws(() => parseYamlSubset('a: "open\n'), /unterminated/);
  assert.throws(() => parseYamlSubset('a: x\n---\nb: y\n'), /one YAML document/);
  assert.throws(() => parseYamlSubset('\ta: 1\n'), /tabs/);
  let deep = 'x';
  for (let i = 0; i < 40; i++) deep = `k:\n${deep.replace(/^/gm, '  ')}`;
  assert.throws(() => parseYamlSubset(deep), /nested too deeply/);
});

test('parseFirstBoot: users, keys, sources, packages, commands; --ssh-key goes to the login user', () => {
  const cfg = parseFirstBoot({ sshAuthorizedKeys: [`# my key\n${KEY}\n`], userData: USER_DATA }, 'vm1');
  assert.equal(cfg.hostname, 'web-1');
  assert.deepEqual(
    cfg.users.map((u) => u.name),
    [DEFAULT_LOGIN_USER, 'alice'],
  );
  assert.deepEqual(cfg.users[0]!.sshAuthorizedKeys, [KEY]);
  assert.equal(cfg.users[0]!.sudo, 'ALL=(ALL) NOPASSWD:ALL');
  assert.deepEqual(cfg.users[1]!.groups, ['adm', 'sudo']);
  assert.equal(cfg.keepImageSources, false);
  assert.deepEqual(cfg.aptSources, [{ name: 'local', line: 'deb [trusted=yes] http://10.0.2.2:8080/ ./' }]);
  assert.equal(cfg.packageUpdate, true);
  assert.deepEqual(cfg.commands, ['echo done > /var/tmp/runcmd-ran', "'touch' '/var/tmp/with space'"]);
  assert.deepEqual(cfg.network, { kind: 'dhcp' });

  const keysOnly = parseFirstBoot({ sshAuthorizedKeys: [KEY] }, 'vm2');
  assert.equal(keysOnly.hostname, 'vm2');
  assert.deepEqual(
    keysOnly.users.map((u) => [u.name, u.sshAuthorizedKeys]),
    [[DEFAULT_LOGIN_USER, [KEY]]],
  );

  const script = parseFirstBoot({ userData: '#!/bin/sh\necho hi\n' }, 'vm3');
  assert.equal(script.script, '#!/bin/sh\necho hi\n');

  const json = parseFirstBoot({ userData: '#cloud-config\n{"hostname": "j", "packages": ["curl"]}' }, 'vm4');
  assert.equal(json.hostname, 'j');
  assert.deepEqual(json.packages, ['curl']);

  const net = parseFirstBoot(
    {
      userData:
        '#cloud-config\nnetwork:\n  version: 2\n  ethernets:\n    all:\n      addresses: [10.0.2.50/24]\n      gateway4: 10.0.2.2\n      nameservers:\n        addresses: [10.0.2.3]\n',
    },
    'vm5',
  );
  assert.deepEqual(net.network, {
    kind: 'static',
    addresses: ['10.0.2.50/24'],
    gateway: '10.0.2.2',
    dns: ['10.0.2.3'],
    interface: undefined,
  });
});

test('parseFirstBoot: each bad field is a FirstBootError that names it', () => {
  const bad = (userData: string, re: RegExp, keys?: string[]) =>
    assert.throws(
      () => parseFirstBoot({ userData, sshAuthorizedKeys: keys }, 'vm'),
      (e: unknown) => e instanceof FirstBootError && re.test(e.message),
    );
  bad('#cloud-config\nbootcmd: [x]\n', /unsupported key\(s\) bootcmd/);
  bad('#cloud-config\nhostname: "bad name!"\n', /hostname/);
  bad('#cloud-config\nusers:\n  - name: Root Man\n', /users\.0\.name|users\.0/);
  bad('#cloud-config\nusers:\n  - name: root\n', /'root' cannot be created/);
  bad('#cloud-config\nusers: []\n', /at least one user/);
  bad('#cloud-config\nssh_authorized_keys: [not-a-key]\n', /ssh_authorized_keys\.0/);
  bad('#cloud-config\npackages: ["rm -rf /"]\n', /packages\.0: not a Debian package name/);
  bad('#cloud-config\napt:\n  sources:\n    x:\n      source: "http://x"\n', /deb \.\.\./);
  bad('#cloud-config\nnetwork:\n  version: 2\n  ethernets:\n    all:\n      addresses: [10.0.2.300/24]\n', /A\.B\.C\.D/);
  bad('#cloud-config\nhostname: [a\n', /user-data: line 1/);
  bad('hostname: x\n', /must start with '#cloud-config' or a '#!'/);
  bad('', /--ssh-key: not an OpenSSH public key/, ['ssh-ed25519 !!!']);
  bad('#!/bin/sh\n' + 'x'.repeat(70_000), /larger than/);
});

test('the first-boot script is valid sh, and its stages configure a scratch root through stand-in commands', () => {
  const cfg = parseFirstBoot({ sshAuthorizedKeys: [KEY], userData: USER_DATA }, 'vm1');
  const work = mkdtempSync(join(tmpdir(), 'tv-firstboot-'));
  try {
    const script = renderFirstBootScript(cfg);
    const file = join(work, 'firstboot.sh');
    writeFileSync(file, script);
    execFileSync('sh', ['-n', file]);
    // Every absolute path in the script is rewritten under the scratch root, and the commands that change the
    // system (useradd, apt-get...) are stand-ins that log their arguments.
    const root = join(work, 'root');
    for (const d of [
      'etc/apt/sources.list.d',
      'etc/sudoers.d',
      'etc/systemd/network',
      'proc/sys/kernel',
      'var/lib',
      'var/tmp',
      'home',
    ])
      mkdirSync(join(root, d), { recursive: true });
    writeFileSync(join(root, 'etc/hosts'), '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n');
    writeFileSync(join(root, 'etc/apt/sources.list.d/debian.sources'), 'x');
    const bin = join(work, 'bin');
    mkdirSync(bin);
    const log = join(work, 'calls.log');
    for (const cmd of ['useradd', 'groupadd', 'usermod', 'chown', 'apt-get', 'visudo', 'touch'])
      writeFileSync(join(bin, cmd), `#!/bin/sh\necho "${cmd} $*" >>${log}\n`, { mode: 0o755 });
    writeFileSync(join(bin, 'install'), '#!/bin/sh\nfor a; do last=$a; done\nmkdir -p "$last"\n', { mode: 0o755 });
    writeFileSync(join(bin, 'id'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    writeFileSync(
      join(bin, 'getent'),
      `#!/bin/sh\n[ "$1" = passwd ] && echo "$2:x:1000:1000::${root}/home/$2:/bin/bash"\nexit 0\n`,
      {
        mode: 0o755,
      },
    );
    const rooted = script.replace(/(?<=[\s'">])\/(etc|proc|var)\//g, `${root}/$1/`);
    writeFileSync(file, rooted);
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
    execFileSync('sh', [file, 'init'], { env });
    assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'web-1\n');
    assert.match(readFileSync(join(root, 'etc/hosts'), 'utf8'), /^127\.0\.1\.1\tweb-1$/m);
    assert.equal(
      readFileSync(join(root, 'etc/apt/sources.list.d/local.list'), 'utf8'),
      'deb [trusted=yes] http://10.0.2.2:8080/ ./\n',
    );
    assert.throws(() => readFileSync(join(root, 'etc/apt/sources.list.d/debian.sources')));
    assert.equal(readFileSync(join(root, 'etc/motd'), 'utf8'), 'line one\nit\'s "two"\n');
    const calls = readFileSync(log, 'utf8');
    assert.match(calls, /^useradd -m -U -s \/bin\/bash debian$/m);
    assert.match(calls, /^usermod -aG sudo alice$/m);
    assert.match(calls, /^visudo -cqf .*90-typevisor-alice\.tmp$/m);
    assert.equal(readFileSync(join(root, 'home/debian/.ssh/authorized_keys'), 'utf8'), `${KEY}\n`);
    assert.equal(readFileSync(join(root, 'home/alice/.ssh/authorized_keys'), 'utf8'), `${KEY}\n`);
    execFileSync('sh', [file, 'final'], { env });
    const after = readFileSync(log, 'utf8');
    assert.match(after, /^apt-get -o DPkg::Lock::Timeout=600 update$/m);
    assert.match(after, /^apt-get -o DPkg::Lock::Timeout=600 install -y hello$/m);
    assert.match(after, /^touch \S*\/var\/tmp\/with space$/m);
    assert.equal(readFileSync(join(root, 'var/tmp/runcmd-ran'), 'utf8'), 'done\n');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('the seed disk is a tar archive tar(1) reads: meta-data with the instance id, user-data, the script', () => {
  const cfg = parseFirstBoot({ sshAuthorizedKeys: [KEY], userData: USER_DATA }, 'vm1');
  const work = mkdtempSync(join(tmpdir(), 'tv-seed-'));
  try {
    const img = seedImage('1234-abcd', cfg);
    assert.equal(img.length % 512, 0);
    writeFileSync(join(work, 'seed.img'), img);
    assert.deepEqual(
      execFileSync('tar', ['-tf', join(work, 'seed.img')], { encoding: 'utf8' })
        .trim()
        .split('\n'),
      ['meta-data', 'user-data', 'typevisor-firstboot.sh'],
    );
    execFileSync('tar', ['-xf', join(work, 'seed.img'), '-C', work]);
    assert.equal(readFileSync(join(work, 'meta-data'), 'utf8'), 'instance-id: 1234-abcd\nlocal-hostname: web-1\n');
    assert.equal(readFileSync(join(work, 'user-data'), 'utf8'), USER_DATA);
    assert.equal(readFileSync(join(work, 'typevisor-firstboot.sh'), 'utf8'), renderFirstBootScript(cfg));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
