// @exclusive: watches the CPU chart drop and recover around pause/resume and times a CLI change reaching the page
/**
 * The web console in a real browser (Debian's Chromium through playwright-core) against a real daemon running
 * real Linux guests from the default image. It logs in through the page, creates a VM with the form, starts it,
 * runs `echo $((6*7))` in the xterm.js console and reads 42 from the terminal, pauses and resumes it from the page
 * while a busy loop runs and reads the CPU chart fall and recover, stops and deletes it, sees a VM started by the
 * CLI appear without a reload, and checks that a wrong token and a request without the CSRF token are refused.
 * It also takes a screenshot of each page, light and dark: into a temporary folder, or, to refresh the ones in the
 * docs, where TYPEVISOR_SCREENSHOTS says (`TYPEVISOR_SCREENSHOTS=docs/web`); a suite run leaves the tree clean.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { guestArtifacts } from '../../src/guests/index.js';
import { cliArgs, repoRoot } from '../helpers/paths.js';
import { removeHome, startDaemonProcess, tempHome, waitFor, type DaemonHandle } from '../host/daemon-harness.js';
import { daemonToken, launchChromium, logIn, newContext, tcpBase } from './browser.js';

const SHOTS = process.env.TYPEVISOR_SCREENSHOTS
  ? resolve(repoRoot, process.env.TYPEVISOR_SCREENSHOTS)
  : join(tmpdir(), 'typevisor-screenshots');
const BOOT_MS = 600_000;

let d: DaemonHandle;
let browser: Browser;
let base: string;
let token: string;

before(async () => {
  guestArtifacts(); // a missing guest image fails the test with the command that builds it
  const home = tempHome();
  d = await startDaemonProcess({
    home,
    runtime: 'machine',
    extraArgs: ['--listen', 'tcp:127.0.0.1:0', '--listen', `unix:${home}/typevisor.sock`],
  });
  base = tcpBase(d);
  token = daemonToken(d);
  browser = await launchChromium();
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  if (d) {
    const { vms } = await d.client.json<{ vms: { name: string }[] }>('GET', '/vms').catch(() => ({ vms: [] }));
    await Promise.all(vms.map((v) => d.client.json('DELETE', `/vms/${v.name}?force=true`).catch(() => {})));
    assert.equal(await d.stop(), 0);
    removeHome(d.home);
  }
});

function cli(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, cliArgs(...args, '--home', d.home), { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: r.stdout + r.stderr };
}

async function shot(page: Page, name: string): Promise<void> {
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.waitForTimeout(300); // charts redraw with the theme's colours
    await page.screenshot({ path: join(SHOTS, `${name}-${scheme}.png`), fullPage: true });
  }
  await page.emulateMedia({ colorScheme: 'light' });
}

const terminalText = (page: Page): Promise<string> => page.locator('.xterm-rows').innerText();
/** Waits for `re` in the terminal's rows; a timeout shows what the terminal held. */
async function waitForTerminal(page: Page, what: string, re: RegExp, ms: number): Promise<void> {
  try {
    await waitFor(what, async () => (re.test(await terminalText(page)) ? true : undefined), ms, 250);
  } catch (err) {
    throw new Error(`${(err as Error).message}; the terminal shows:\n${(await terminalText(page)).slice(-1500)}`, {
      cause: err,
    });
  }
}
const cpuLatest = async (page: Page): Promise<number> => Number(await page.locator('#vm-cpu').getAttribute('data-latest'));

test('log in: a wrong token is refused, the right one opens the host page', { timeout: 120_000 }, async () => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  await page.goto(base + '/');
  await shot(page, 'login');
  await page.getByLabel('Daemon token').fill('0'.repeat(64));
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'wrong token' }).waitFor();
  assert.equal((await ctx.cookies()).length, 0, 'no session cookie for a wrong token');
  assert.ok(!page.url().includes(token));

  await page.getByLabel('Daemon token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Virtual machines' }).waitFor();
  const [cookie] = await ctx.cookies();
  assert.equal(cookie?.name, 'tv_session');
  assert.equal(cookie?.httpOnly, true);
  assert.equal(cookie?.sameSite, 'Strict');
  assert.ok(!page.url().includes(token), 'the token never appears in a URL');
  assert.equal(await page.evaluate('document.cookie'), '', 'the page script cannot read the session cookie');

  // The browser holds a valid session cookie; a request without the CSRF header is still refused.
  const refused = await page.evaluate(async () => {
    const r = await fetch('/vms', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"sneaky"}' });
    return { status: r.status, body: (await r.json()) as { error: { code: string } } };
  });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error.code, 'CSRF_REJECTED');
  await ctx.close();
});

test(
  'create, start, console, pause/resume on the CPU chart, stop and delete, all from the page',
  { timeout: 1_200_000 },
  async (t) => {
    const ctx = await newContext(browser);
    await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
    const page = await ctx.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    // Any CSP violation (a style element without the nonce, an inline script) is reported with where it came from.
    await page.addInitScript(
      "document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + [e.violatedDirective, e.sample, e.sourceFile, e.lineNumber, e.columnNumber].join(' | ')))",
    );
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|CSP violation/i.test(m.text())) problems.push(m.text());
    });
    await logIn(page, base, token);

    // The form shows the API's own validation message.
    await page.getByRole('link', { name: 'New VM' }).first().click();
    await page.getByLabel('Name').fill('Not A Name');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.locator('.field-error').filter({ hasText: 'must be 1-63 characters' }).waitFor();
    await page.getByLabel('Memory (MiB)').fill('8');
    await page.getByLabel('Name').fill('web1');
    await page.getByRole('button', { name: 'Create' }).click();
    await page
      .locator('.field-error')
      .filter({ hasText: /memoryMiB: Too small/ })
      .waitFor();
    await shot(page, 'create');
    await page.getByLabel('Memory (MiB)').fill('128');
    assert.equal(await page.locator('.field-error').count(), 0, 'editing the field clears the complaint');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.waitForURL('**/ui/vm/web1');
    await page.locator('.vm-head [data-state="defined"]').waitFor();
    assert.equal(await page.locator('button[data-action="pause"]').isDisabled(), true, 'pause is disabled while defined');

    await page.locator('button[data-action="start"]').click();
    await page.locator('.vm-head [data-state="running"]').waitFor({ timeout: 30_000 });
    assert.equal(await page.locator('button[data-action="start"]').isDisabled(), true, 'start is disabled while running');
    assert.equal(await page.locator('button[data-action="delete"]').isDisabled(), true, 'delete is disabled while running');

    // The console: wait for the shell, then type as a person would.
    const t0 = Date.now();
    await page.locator('.console-status.connected').waitFor({ timeout: 30_000 });
    await waitForTerminal(page, 'the guest shell prompt', /typevisor:\/# /, BOOT_MS);
    t.diagnostic(`guest shell in the browser console after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await page.locator('.console-screen').click();
    await page.keyboard.type('echo $((6*7))\n');
    await waitForTerminal(page, '42 in the terminal', /^42\s*$/m, 60_000);

    // Copy: double-click selects the word 42 in the terminal, the Copy button puts it on the clipboard.
    const row = await page
      .locator('.xterm-rows > div')
      .filter({ hasText: /^42\s*$/ })
      .last()
      .boundingBox();
    assert.ok(row, 'the row with 42 is on screen');
    await page.mouse.dblclick(row.x + 4, row.y + row.height / 2);
    await page.getByRole('button', { name: 'Copy' }).click();
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), '42');
    // Paste: Ctrl+Shift+V sends the clipboard to the guest.
    await page.evaluate("navigator.clipboard.writeText('echo pasted-$((40+2))')");
    await page.locator('.console-screen').click();
    await page.keyboard.press('Control+Shift+V');
    // Pasting reads the clipboard asynchronously: press Enter once the guest has echoed the pasted line.
    await waitForTerminal(page, 'the pasted line', /echo pasted-/, 30_000);
    await page.keyboard.press('Enter');
    await waitForTerminal(page, 'pasted command output', /^pasted-42\s*$/m, 60_000);

    // A busy loop in the guest, then pause and resume: the CPU chart falls to ~0 and comes back (20 %: the shared machine may give the VM thread, at nice 10, well under a core).
    await page.keyboard.type('while :; do :; done &\n');
    const busy = await waitFor(
      'CPU chart above 20 %',
      async () => {
        const v = await cpuLatest(page);
        return v > 20 ? v : undefined;
      },
      120_000,
      500,
    );
    await shot(page, 'vm');
    await page.locator('button[data-action="pause"]').click();
    await page.locator('.vm-head [data-state="paused"]').waitFor({ timeout: 30_000 });
    const paused = await waitFor(
      'CPU chart near 0 while paused',
      async () => {
        const v = await cpuLatest(page);
        return v < 5 ? v : undefined;
      },
      30_000,
      500,
    );
    await page.locator('button[data-action="resume"]').click();
    await page.locator('.vm-head [data-state="running"]').waitFor({ timeout: 30_000 });
    const resumed = await waitFor(
      'CPU chart back above 20 %',
      async () => {
        const v = await cpuLatest(page);
        return v > 20 ? v : undefined;
      },
      60_000,
      500,
    );
    t.diagnostic(`CPU chart: busy ${busy.toFixed(0)} %, paused ${paused.toFixed(1)} %, resumed ${resumed.toFixed(0)} %`);

    // The console log shows the boot.
    await page.locator('.console-log summary').click();
    await page.locator('.console-log pre').filter({ hasText: 'typevisor-guest: ready' }).waitFor({ timeout: 30_000 });

    await page.locator('button[data-action="stop"]').click();
    await page.locator('.vm-head [data-state="stopped"]').waitFor({ timeout: 60_000 });
    page.once('dialog', (dialog) => void dialog.accept());
    await page.locator('button[data-action="delete"]').click();
    await page.waitForURL((u) => u.pathname === '/ui/');
    await page.getByText('No VMs yet').waitFor({ timeout: 10_000 });
    assert.deepEqual(problems, [], 'no page errors and no CSP violations');
    await ctx.close();
  },
);

test(
  'a VM created and started from the CLI shows on an open page within 2 s, without a reload',
  { timeout: 300_000 },
  async (t) => {
    const ctx = await newContext(browser);
    const page = await ctx.newPage();
    await logIn(page, base, token);
    await page.evaluate('window.marker = 1'); // survives only if the page does not reload

    assert.equal(cli('create', 'cli1', '--memory', '64').status, 0);
    await page.locator('tr[data-vm="cli1"] [data-state="defined"]').waitFor({ timeout: 2_000 });
    const start = cli('start', 'cli1');
    assert.equal(start.status, 0, start.out);
    const t0 = Date.now();
    await page.locator('tr[data-vm="cli1"] [data-state="running"]').waitFor({ timeout: 2_000 });
    t.diagnostic(`running shown ${Date.now() - t0} ms after the CLI returned`);
    assert.equal(await page.evaluate('window.marker'), 1, 'the page did not reload');
    await page.waitForTimeout(6000); // a few samples on the host charts for the screenshot
    await shot(page, 'host');

    // Keyboard only: Tab to the VM's link and press Enter.
    await page.locator('body').focus();
    let reached = false;
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = (await page.evaluate('document.activeElement?.textContent')) === 'cli1';
    }
    assert.ok(reached, 'the VM link is reachable with Tab');
    await page.keyboard.press('Enter');
    await page.waitForURL('**/ui/vm/cli1');

    // The bookmarkable URL of a VM opens its page directly.
    await page.goto(`${base}/ui/vm/cli1`);
    await page.getByRole('heading', { name: 'cli1' }).waitFor();
    assert.equal(cli('stop', 'cli1').status, 0);
    await page.locator('.vm-head [data-state="stopped"]').waitFor({ timeout: 2_000 });

    // The settings form changes the VM; the API's own message explains a refusal.
    await page.getByLabel('Memory (MiB)').fill('8');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page
      .getByRole('alert')
      .filter({ hasText: /memoryMiB: Too small/ })
      .waitFor();
    await page.getByLabel('Memory (MiB)').fill('96');
    await page.getByLabel('vCPUs').fill('2');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
    const vm = await d.client.json<{ config: { memoryMiB: number; cpus: number } }>('GET', '/vms/cli1');
    assert.deepEqual([vm.config.memoryMiB, vm.config.cpus], [96, 2]);
    assert.equal(cli('delete', 'cli1').status, 0);
    await ctx.close();
  },
);

test("charts start from the daemon's history ring where it has one", { timeout: 120_000 }, async (t) => {
  // This daemon has no history ring yet (GET /host/stats answers 404, and the charts fill from live snapshots);
  // daemons that keep one answer GET /host/stats and /vms/NAME/stats with ?history=N. Their answers are faked
  // in the browser, in that ring's format, so the seeding is exercised.
  await d.client.json('POST', '/vms', { name: 'hist1', memoryMiB: 64 });
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  // 120 one-second host samples and 60 of the VM's.
  const now = Date.now();
  const samples = Array.from({ length: 120 }, (_, i) => ({
    t: now - (120 - i) * 1000,
    cpuPercent: 80,
    idleCores: 1.2,
    vmCpuPercent: 80,
    vmStealPercent: 0,
    memoryUsedBytes: 2 ** 30,
    vmResidentBytes: 64 * 2 ** 20,
    diskReadBytesPerSecond: 4096,
    diskWriteBytesPerSecond: 0,
    netRxBytesPerSecond: 0,
    netTxBytesPerSecond: 0,
  }));
  await page.route(/\/host\/stats\?history=/, (route) => route.fulfill({ json: { intervalSeconds: 1, samples } }));
  const vmSamples = Array.from({ length: 60 }, (_, i) => ({
    t: Date.now() - (60 - i) * 1000,
    state: 'running',
    cpuPercent: 50,
    stealPercent: 0,
    instructionsPerSecond: 1e7,
    capPercent: null,
    weight: 100,
    residentBytes: 8 * 2 ** 20,
    balloonBytes: 0,
    diskReadBytesPerSecond: 0,
    diskWriteBytesPerSecond: 0,
    netRxBytesPerSecond: 0,
    netTxBytesPerSecond: 0,
  }));
  await page.route(/\/vms\/hist1\/stats\?history=/, (route) =>
    route.fulfill({ json: { intervalSeconds: 1, samples: vmSamples } }),
  );
  await logIn(page, base, token);
  const seededPoints = await waitFor(
    'the host CPU chart seeded from the history ring',
    async () => {
      const n = Number(await page.locator('#host-cpu').getAttribute('data-points'));
      return n >= 120 ? n : undefined;
    },
    10_000,
    200,
  );
  t.diagnostic(`host CPU chart: ${seededPoints} points right after loading (120 from the history ring)`);
  await page.goto(`${base}/ui/vm/hist1`);
  await page.getByRole('heading', { name: 'hist1' }).waitFor();
  await waitFor(
    'the VM CPU chart seeded from its history ring',
    async () => (Number(await page.locator('#vm-cpu').getAttribute('data-points')) >= 60 ? true : undefined),
    10_000,
    200,
  );
  await ctx.close();
  await d.client.json('DELETE', '/vms/hist1');
});
