/**
 * The daemon's TCP listener with TLS: HTTPS and WSS only, checked with the real CLI and the console WebSocket
 * against a certificate made by openssl; a client that does not trust the certificate, speaks plain HTTP, or has
 * the wrong token gets nowhere; bad TLS options are refused at start-up.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliArgs } from '../helpers/paths.js';
import { Client, resolveEndpoint } from '../../src/cli/client.js';
import { removeHome, startDaemonProcess, tempHome, toyKernel, type DaemonHandle } from '../host/daemon-harness.js';

let d: DaemonHandle;
let dir: string;
let url: string;
let cert: string;
let key: string;

function openssl(...args: string[]): void {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

function selfSigned(name: string): { cert: string; key: string } {
  const c = join(dir, `${name}.crt`);
  const k = join(dir, `${name}.key`);
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    k,
    '-out',
    c,
    '-days',
    '2',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  );
  return { cert: c, key: k };
}

/** The CLI against the daemon over TCP (no unix socket fallback: the home's socket is not used with --url). */
function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, cliArgs(...args, '--home', d.home), {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, TYPEVISOR_URL: '', TYPEVISOR_CA: '', TYPEVISOR_TOKEN: '' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(async () => {
  dir = tempHome('tv-tls-');
  ({ cert, key } = selfSigned('daemon'));
  d = await startDaemonProcess({
    extraArgs: ['--listen', 'tcp:127.0.0.1:0', '--tls-cert', cert, '--tls-key', key],
    allowPaths: [dir],
  });
  url = `https://${d.addresses.find((a) => a.startsWith('tcp:'))!.slice(4)}`;
  writeFileSync(join(dir, 'kernel.bin'), toyKernel());
});
after(async () => {
  await d.stop();
  removeHome(d.home);
  removeHome(dir);
});

test('the CLI manages VMs over HTTPS when it trusts the certificate (--ca)', { timeout: 60_000 }, () => {
  const created = cli('create', 'tls1', '--kernel', join(dir, 'kernel.bin'), '--cmdline', 'toy=idle', '--url', url, '--ca', cert);
  assert.equal(created.status, 0, created.stderr);
  const listed = cli('ls', '--json', '--url', url, '--ca', cert);
  assert.equal(listed.status, 0, listed.stderr);
  assert.deepEqual(
    (JSON.parse(listed.stdout) as { name: string }[]).map((v) => v.name),
    ['tls1'],
  );
});

test('untrusted certificate, plain HTTP, a wrong token: exit 5 and nothing done', { timeout: 60_000 }, () => {
  const untrusted = cli('ls', '--url', url);
  assert.equal(untrusted.status, 5, untrusted.stderr);
  assert.match(untrusted.stderr, /self[- ]signed|certificate/i);
  const plain = cli('ls', '--url', url.replace('https:', 'http:'));
  assert.equal(plain.status, 5, plain.stderr);
  const badToken = cli(
    'create',
    'tls2',
    '--kernel',
    join(dir, 'kernel.bin'),
    '--url',
    url,
    '--ca',
    cert,
    '--token',
    'f'.repeat(64),
  );
  assert.equal(badToken.status, 5, badToken.stderr);
  assert.equal(cli('info', 'tls2', '--url', url, '--ca', cert).status, 3);
  const caOnHttp = cli('ls', '--url', url.replace('https:', 'http:'), '--ca', cert);
  assert.equal(caOnHttp.status, 2, caOnHttp.stderr);
});

test('the console WebSocket runs over WSS both ways', { timeout: 60_000 }, async () => {
  const client = new Client(
    resolveEndpoint({ url, ca: cert, token: readFileSync(join(d.home, 'token'), 'utf8').trim(), home: d.home }),
  );
  await client.json('POST', '/vms', { name: 'tls3', kernel: join(dir, 'kernel.bin'), cmdline: 'toy=idle' });
  await client.json('POST', '/vms/tls3/actions/start', {});
  const ws = client.websocket('/vms/tls3/console');
  let text = '';
  ws.on('message', (b: Buffer) => (text += b.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send('over tls\n');
  const deadline = Date.now() + 20_000;
  while (!text.includes('echo: over tls') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  ws.close();
  assert.match(text, /echo: over tls/);
  await client.json('POST', '/vms/tls3/actions/stop', {});
});

test('bad TLS options are refused at start-up with exit 2', { timeout: 60_000 }, () => {
  const home = tempHome('tv-tls-bad-');
  try {
    const other = selfSigned('other');
    const run = (...args: string[]) =>
      spawnSync(process.execPath, cliArgs('daemon', '--home', home, ...args), { encoding: 'utf8', timeout: 30_000 });
    const onlyCert = run('--listen', 'tcp:127.0.0.1:0', '--tls-cert', cert);
    assert.equal(onlyCert.status, 2);
    assert.match(onlyCert.stderr, /go together/);
    const noTcp = run('--tls-cert', cert, '--tls-key', key);
    assert.equal(noTcp.status, 2);
    assert.match(noTcp.stderr, /TCP listeners/);
    const mismatched = run('--listen', 'tcp:127.0.0.1:0', '--tls-cert', cert, '--tls-key', other.key);
    assert.equal(mismatched.status, 2);
    assert.match(mismatched.stderr, /cannot use the TLS certificate\/key/);
    const missing = run('--listen', 'tcp:127.0.0.1:0', '--tls-cert', join(dir, 'nope.crt'), '--tls-key', key);
    assert.equal(missing.status, 2);
  } finally {
    removeHome(home);
  }
});
