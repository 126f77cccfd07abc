/**
 * The web console's HTTP side against a real daemon process on a TCP listener: the page is served without a
 * token, the token becomes an HttpOnly SameSite=Strict cookie, cookie requests need the CSRF header (and our own
 * Origin), and every answer carries a Content-Security-Policy. The bearer token keeps working for the CLI.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { request } from 'node:http';
import WebSocket from 'ws';
import { removeHome, startDaemonProcess, tempHome, type DaemonHandle } from '../host/daemon-harness.js';

const WEB_DIR = fileURLToPath(new URL('../../../dist/web/', import.meta.url));
let d: DaemonHandle;
let base: string;
let token: string;

before(async () => {
  const home = tempHome();
  d = await startDaemonProcess({ home, extraArgs: ['--listen', 'tcp:127.0.0.1:0', '--listen', `unix:${home}/typevisor.sock`] });
  const tcp = d.addresses.find((a) => a.startsWith('tcp:'));
  assert.ok(tcp, `a TCP listener in ${d.addresses.join(' ')}`);
  base = `http://${tcp.slice(4)}`;
  token = readFileSync(`${d.home}/token`, 'utf8').trim();
});
after(async () => {
  assert.equal(await d.stop(), 0);
  removeHome(d.home);
});

async function login(): Promise<{ cookie: string; csrf: string; setCookie: string }> {
  const res = await fetch(`${base}/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token }),
  });
  assert.equal(res.status, 200);
  const setCookie = res.headers.get('set-cookie') ?? '';
  const body = (await res.json()) as { csrfToken: string; auth: string };
  assert.equal(body.auth, 'session');
  return { cookie: setCookie.split(';')[0]!, csrf: body.csrfToken, setCookie };
}

describe('web console over TCP', () => {
  test('the page is served at / and /ui/... without a token, with a strict CSP and a fresh nonce each time', async () => {
    assert.ok(existsSync(WEB_DIR + 'index.html'), 'dist/web is built by npm run build / scripts/test.mjs');
    const a = await fetch(`${base}/`);
    assert.equal(a.status, 200);
    assert.match(a.headers.get('content-type') ?? '', /^text\/html/);
    const csp = a.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/, 'no inline or remote script');
    assert.match(csp, /frame-ancestors 'none'/);
    assert.match(
      csp,
      /style-src 'self' 'nonce-[^']+'(;|$)/,
      "style elements need the nonce ('unsafe-inline' only for attributes)",
    );
    const html = await a.text();
    const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
    assert.ok(nonce && html.includes(`content="${nonce}"`), 'the page carries the nonce its CSP names');
    assert.doesNotMatch(html, /https?:\/\//, 'no asset from another origin');
    const b = await fetch(`${base}/ui/vm/some-vm`);
    assert.equal(b.status, 200, 'every /ui/ path is the page (bookmarkable URLs)');
    assert.notEqual(/'nonce-([^']+)'/.exec(b.headers.get('content-security-policy') ?? '')?.[1], nonce);

    const script = /src="(\/ui\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    assert.ok(script);
    const js = await fetch(base + script, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(js.status, 200);
    assert.match(js.headers.get('cache-control') ?? '', /immutable/);
    assert.ok((await js.text()).length > 1000);
  });

  test('public page paths never reach the API or files outside the assets, whatever the dots and slashes', async () => {
    const u = new URL(base);
    // Raw paths, exactly as sent (fetch would normalise them).
    const get = (path: string): Promise<{ status: number; type: string; body: string }> =>
      new Promise((resolve, reject) => {
        request({ host: u.hostname, port: u.port, path }, (r) => {
          let body = '';
          r.on('data', (c: Buffer) => (body += c.toString()));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, type: String(r.headers['content-type']), body }));
        })
          .on('error', reject)
          .end();
      });
    for (const path of ['/ui/../vms', '/ui/%2e%2e/vms', '/ui//vms', '/ui/../host']) {
      const r = await get(path);
      assert.ok(r.status === 200 && r.type.startsWith('text/html'), `${path}: the page, not the API (${r.status} ${r.type})`);
    }
    for (const path of ['/ui/assets/../../token', '/ui/assets/%2e%2e/%2e%2e/index.html', '/ui/assets/..%2f..%2ftoken']) {
      const r = await get(path);
      assert.ok(r.status >= 400 && !r.body.includes(token), `${path}: refused (${r.status})`);
    }
    for (const path of ['//vms', '/session/../vms', '/session/x']) {
      const r = await get(path);
      assert.ok(r.status === 401 && !r.body.includes('"vms"'), `${path}: needs the token (${r.status})`);
    }
  });

  test('the API refuses requests without a token or session', async () => {
    const res = await fetch(`${base}/vms`);
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
    assert.equal((await fetch(`${base}/session`)).status, 401, 'no session yet');
  });

  test('a wrong token is refused and sets no cookie', async () => {
    const res = await fetch(`${base}/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: 'f'.repeat(64) }),
    });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('set-cookie'), null);
  });

  test('the session cookie is HttpOnly and SameSite=Strict, and reads work with it', async () => {
    const s = await login();
    assert.match(s.setCookie, /^tv_session=[A-Za-z0-9_-]{43}; /);
    assert.match(s.setCookie, /HttpOnly/);
    assert.match(s.setCookie, /SameSite=Strict/);
    assert.ok(!s.setCookie.includes(token), 'the token itself is never the cookie');
    const res = await fetch(`${base}/vms`, { headers: { cookie: s.cookie } });
    assert.equal(res.status, 200);
    const again = (await (await fetch(`${base}/session`, { headers: { cookie: s.cookie } })).json()) as { csrfToken: string };
    assert.equal(again.csrfToken, s.csrf, 'a reload gets the CSRF token back from the session');
  });

  test('a request that changes something needs the CSRF header; a wrong one or another origin is refused', async () => {
    const s = await login();
    const create = (headers: Record<string, string>): Promise<Response> =>
      fetch(`${base}/vms`, {
        method: 'POST',
        headers: { cookie: s.cookie, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ name: 'csrf-vm', kernel: '/nonexistent' }),
      });
    for (const [why, headers] of [
      ['no header', {}],
      ['wrong header', { 'x-csrf-token': s.csrf.slice(1) + 'x' }],
      ['another origin', { 'x-csrf-token': s.csrf, origin: 'http://evil.example' }],
    ] as const) {
      const res = await create(headers);
      assert.equal(res.status, 403, why);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'CSRF_REJECTED', why);
    }
    const list = (await (await fetch(`${base}/vms`, { headers: { cookie: s.cookie } })).json()) as { vms: unknown[] };
    assert.equal(list.vms.length, 0, 'nothing was created by the refused requests');
    // With the header the request reaches the API (and its own validation answers).
    const ok = await create({ 'x-csrf-token': s.csrf, origin: base });
    assert.notEqual(ok.status, 401);
    // The API's own answer (here the path policy refusing /nonexistent), not the CSRF check's.
    if (ok.status !== 201)
      assert.notEqual(((await ok.clone().json()) as { error: { code: string } }).error.code, 'CSRF_REJECTED');
    if (ok.status === 201)
      await fetch(`${base}/vms/csrf-vm?force=true`, { method: 'DELETE', headers: { cookie: s.cookie, 'x-csrf-token': s.csrf } });
  });

  test('the console WebSocket accepts the cookie from our origin only', async () => {
    const s = await login();
    const upgrade = (origin: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${base.replace('http', 'ws')}/vms/no-such-vm/console`, {
          headers: { cookie: s.cookie, origin },
        });
        ws.once('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0);
          ws.terminate();
        });
        ws.once('open', () => reject(new Error('opened')));
        ws.once('error', () => {});
      });
    assert.equal(await upgrade('http://evil.example'), 403, 'another site cannot open the console with our cookie');
    assert.equal(await upgrade(base), 404, 'from our origin the cookie authenticates (and the VM is looked up)');
  });

  test('the OpenAPI document describes the session endpoints', async () => {
    const doc = (await (await fetch(`${base}/openapi.json`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    assert.ok(doc.paths['/session']?.post);
  });

  test('logging out ends the session', async () => {
    const s = await login();
    const out = await fetch(`${base}/session`, { method: 'DELETE', headers: { cookie: s.cookie, 'x-csrf-token': s.csrf } });
    assert.equal(out.status, 200);
    assert.match(out.headers.get('set-cookie') ?? '', /Max-Age=0/);
    assert.equal((await fetch(`${base}/vms`, { headers: { cookie: s.cookie } })).status, 401);
  });

  test('the bearer token still works (CLI), and API answers carry a CSP too', async () => {
    const res = await fetch(`${base}/host`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  });
});

describe('web console over the unix socket', () => {
  test('the page is served and the session needs no login (file permissions authenticate)', async () => {
    const page = await d.client.raw('GET', '/');
    assert.equal(page.status, 200);
    assert.match(page.body.toString(), /<div id="app">/);
    const s = await d.client.json<{ auth: string }>('GET', '/session');
    assert.equal(s.auth, 'none');
  });
});
