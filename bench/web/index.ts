/**
 * Web console benchmark: page weight (JS and CSS the browser downloads, raw / gzip / brotli, and the bytes Chromium
 * actually received) and time to interactive of the host page with N VMs (default 20) against a real daemon.
 * The VMs are created from the default image but not started: N running guests would not fit the 2 shared cores
 * of the machines this runs on, and the host page's work (one row per VM, its actions, the charts) is the same.
 * "Interactive" = every VM row is rendered with its action buttons enabled for its state, measured in the page as
 * performance.now() (ms since navigation start). Cold = a fresh browser context (empty cache), warm = a reload.
 *
 *   npx tsx bench/web/index.ts [--vms N] [--rounds R]
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Page } from 'playwright-core';
import { guestArtifacts } from '../../src/guests/index.js';
import { removeHome, startDaemonProcess, tempHome } from '../../test/host/daemon-harness.js';
import { daemonToken, launchChromium, newContext, tcpBase } from '../../test/web/browser.js';
import { repoRoot } from '../../test/helpers/paths.js';

const { values } = parseArgs({ options: { vms: { type: 'string', default: '20' }, rounds: { type: 'string', default: '5' } } });
const VMS = Number(values.vms);
const ROUNDS = Number(values.rounds);
const WEB = join(repoRoot, 'dist/web');
const kib = (n: number): string => (n / 1024).toFixed(1);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function assetWeights(): { file: string; raw: number; gz: number; br: number }[] {
  const dir = join(WEB, 'assets');
  return readdirSync(dir)
    .filter((f) => /\.(js|css)$/.test(f))
    .map((f) => ({
      file: f,
      raw: statSync(join(dir, f)).size,
      gz: statSync(join(dir, f + '.gz')).size,
      br: statSync(join(dir, f + '.br')).size,
    }));
}

async function interactiveMs(page: Page, n: number): Promise<number> {
  return page.evaluate(
    `new Promise((resolve) => {
      const done = () => {
        const rows = document.querySelectorAll('tr[data-vm]');
        if (rows.length !== ${n}) return false;
        for (const r of rows) if (r.querySelector('button[data-action="start"]')?.disabled !== false) return false;
        return true;
      };
      const check = () => (done() ? resolve(performance.now()) : requestAnimationFrame(check));
      check();
    })`,
  ) as Promise<number>;
}

guestArtifacts();
const home = tempHome();
const d = await startDaemonProcess({
  home,
  runtime: 'machine',
  extraArgs: ['--listen', 'tcp:127.0.0.1:0', '--listen', `unix:${home}/typevisor.sock`],
});
const browser = await launchChromium();
try {
  for (let i = 0; i < VMS; i++) await d.client.json('POST', '/vms', { name: `vm-${String(i).padStart(2, '0')}`, memoryMiB: 64 });
  const base = tcpBase(d);
  const token = daemonToken(d);

  const weights = assetWeights();
  const html = readFileSync(join(WEB, 'index.html'), 'utf8');
  const entry = weights.filter((w) => html.includes(w.file));
  const lazy = weights.filter((w) => !html.includes(w.file));
  const sum = (ws: typeof weights, k: 'raw' | 'gz' | 'br'): number => ws.reduce((a, w) => a + w[k], 0);
  console.log(`## page weight (KiB: raw / gzip / brotli)`);
  console.log(`| what | files | raw | gzip | brotli |\n| --- | --- | --- | --- | --- |`);
  console.log(
    `| host page (entry JS + CSS) | ${entry.map((w) => w.file).join(', ')} | ${kib(sum(entry, 'raw'))} | ${kib(sum(entry, 'gz'))} | ${kib(sum(entry, 'br'))} |`,
  );
  console.log(
    `| VM page adds (console chunk: xterm.js) | ${lazy.map((w) => w.file).join(', ')} | ${kib(sum(lazy, 'raw'))} | ${kib(sum(lazy, 'gz'))} | ${kib(sum(lazy, 'br'))} |`,
  );

  const cold: number[] = [];
  const warm: number[] = [];
  let received = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const ctx = await newContext(browser);
    const login = await ctx.request.post(`${base}/session`, { data: { token } });
    if (!login.ok()) throw new Error(`login failed: ${login.status()}`);
    const page = await ctx.newPage();
    let bytes = 0;
    page.on('requestfinished', (req) => {
      if (/\.(js|css)$/.test(new URL(req.url()).pathname)) void req.sizes().then((s) => (bytes += s.responseBodySize));
    });
    await page.goto(`${base}/`);
    cold.push(await interactiveMs(page, VMS));
    await page.waitForTimeout(300);
    received = bytes;
    await page.reload();
    warm.push(await interactiveMs(page, VMS));
    await ctx.close();
  }
  console.log(`\nJS+CSS bytes Chromium received for the host page (compressed on the wire): ${kib(received)} KiB`);
  const poll = await d.client.raw('GET', '/vms?stats=true');
  console.log(`one poll of GET /vms?stats=true with ${VMS} VMs: ${kib(poll.body.length)} KiB`);
  console.log(`\n## time to interactive, host page with ${VMS} VMs (defined, not started), ${ROUNDS} rounds`);
  console.log(`cold: median ${median(cold).toFixed(0)} ms (${cold.map((x) => x.toFixed(0)).join(', ')})`);
  console.log(`warm: median ${median(warm).toFixed(0)} ms (${warm.map((x) => x.toFixed(0)).join(', ')})`);
} finally {
  await browser.close();
  const { vms } = await d.client.json<{ vms: { name: string }[] }>('GET', '/vms');
  for (const v of vms) await d.client.json('DELETE', `/vms/${v.name}?force=true`);
  await d.stop();
  removeHome(home);
}
