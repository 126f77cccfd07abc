/**
 * Prerequisites a test needs from the machine. A missing tool, package file or guest image is something CI can
 * fix, so it FAILS the test with a message naming the apt package (never a skip).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Asserts that `command` runs (`command --version`, or `probeArgs`), naming the apt package that provides it. */
export function requireTool(command: string, aptPackage: string, probeArgs: string[] = ['--version']): void {
  const r = spawnSync(command, probeArgs, { encoding: 'utf8', timeout: 30_000 });
  assert.ok(
    r.error === undefined,
    `${command} is required but not runnable (${r.error?.message ?? ''}): apt-get install ${aptPackage}`,
  );
}

/** Asserts that a file shipped by an apt package exists, and returns its path. */
export function requirePackageFile(path: string, aptPackage: string): string {
  assert.ok(existsSync(path), `${path} is required but missing: apt-get install ${aptPackage}`);
  return path;
}
