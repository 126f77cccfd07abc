/**
 * Debian's Chromium driven by playwright-core (no browser download: scripts/install.sh installs the `chromium`
 * package), and the daemon address/token a browser test logs in with.
 */
import { existsSync, readFileSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { DaemonHandle } from '../host/daemon-harness.js';

export const CHROMIUM = process.env.TYPEVISOR_CHROMIUM ?? '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (scripts/install.sh does)`);
  return chromium.launch({ executablePath: CHROMIUM, args: ['--disable-gpu', '--disable-dev-shm-usage'] });
}

/** http://HOST:PORT of the daemon's first TCP listener. */
export function tcpBase(d: DaemonHandle): string {
  const tcp = d.addresses.find((a) => a.startsWith('tcp:'));
  if (!tcp) throw new Error(`the daemon has no TCP listener: ${d.addresses.join(' ')}`);
  return `http://${tcp.slice(4)}`;
}

export function daemonToken(d: DaemonHandle): string {
  return readFileSync(`${d.home}/token`, 'utf8').trim();
}

/** Logs in through the page's own form, as a person would. */
export async function logIn(page: Page, base: string, token: string): Promise<void> {
  await page.goto(base + '/');
  await page.getByLabel('Daemon token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Virtual machines' }).waitFor();
}

export async function newContext(browser: Browser, colorScheme: 'light' | 'dark' = 'light'): Promise<BrowserContext> {
  return browser.newContext({ colorScheme, viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
}
