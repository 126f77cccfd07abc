// Debian packages: the versions that go into cache keys, and installing what a recipe needs.
// Recipes install their own packages when we are root (the project's machines are Debian and we run as
// root there); otherwise a missing package is reported with the exact apt-get command to run.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { query } from './exec.js';

export class MissingPrerequisiteError extends Error {
  constructor(readonly packages: readonly string[]) {
    super(
      `missing prerequisite apt package(s): ${packages.join(', ')}\n` +
        `  install them with: sudo apt-get install -y ${packages.join(' ')}\n` +
        `  (or run ./scripts/install.sh, which installs everything typevisor needs)`,
    );
    this.name = 'MissingPrerequisiteError';
  }
}

export class AptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AptError';
  }
}

/** The installed version of a binary package, or undefined when it is not installed. */
export function installedVersion(pkg: string): string | undefined {
  const out = query('dpkg-query', ['-W', '-f=${Status}\t${Version}', pkg]);
  if (!out) return undefined;
  const [status, version] = out.split('\t');
  return status?.endsWith(' installed') && version ? version : undefined;
}

/** Every version of a source package apt knows (sorted), e.g. ['1:1.35.0-4+deb12u1']; [] when unknown. */
export function sourceVersions(pkg: string): string[] {
  const out = query('apt-cache', ['showsrc', pkg]) ?? '';
  const versions = new Set<string>();
  let inPackage = false;
  for (const line of out.split('\n')) {
    if (line.startsWith('Package: ')) inPackage = line.slice(9).trim() === pkg;
    else if (inPackage && line.startsWith('Version: ')) versions.add(line.slice(9).trim());
  }
  return [...versions].sort();
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;
let updated = false;

function apt(args: string[], log: (line: string) => void): boolean {
  log(`apt-get ${args.join(' ')}`);
  // Wait (up to 10 min) for the dpkg lock an unattended upgrade may hold on a fresh machine, instead of failing.
  const out = query('apt-get', ['-o', 'DPkg::Lock::Timeout=600', ...args], { DEBIAN_FRONTEND: 'noninteractive' });
  return out !== undefined;
}

/** `apt-get update`, at most once per process. */
export function aptUpdateOnce(log: (line: string) => void): void {
  if (updated) return;
  if (!apt(['update', '-q'], log)) throw new AptError('apt-get update failed');
  updated = true;
}

/** Installs the packages that are missing (as root), or throws MissingPrerequisiteError naming them. */
export function ensurePackages(packages: readonly string[], log: (line: string) => void): void {
  const missing = packages.filter((p) => installedVersion(p) === undefined);
  if (missing.length === 0) return;
  if (!isRoot()) throw new MissingPrerequisiteError(missing);
  log(`installing missing apt packages: ${missing.join(' ')}`);
  const install = ['install', '-y', '-q', '--no-install-recommends', ...missing];
  // The package lists may be stale or absent on a fresh machine: update once and retry.
  if (!apt(install, log)) {
    aptUpdateOnce(log);
    if (!apt(install, log)) throw new AptError(`apt-get install ${missing.join(' ')} failed`);
  }
  const still = missing.filter((p) => installedVersion(p) === undefined);
  if (still.length) throw new MissingPrerequisiteError(still);
}

interface AptSource {
  uri: string;
  suite: string;
  signedBy?: string;
}

/** The main Debian archive this machine's apt uses for binary packages (deb822 or one-line format). */
function debianBinarySource(): AptSource | undefined {
  const dir = '/etc/apt/sources.list.d';
  const files = existsSync(dir) ? readdirSync(dir).map((f) => join(dir, f)) : [];
  if (existsSync('/etc/apt/sources.list')) files.unshift('/etc/apt/sources.list');
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, 'mi').exec(stanza)?.[1]?.trim();
        const uri = field('URIs')?.split(/\s+/)[0];
        const suite = field('Suites')?.split(/\s+/)[0];
        if (field('Types')?.split(/\s+/).includes('deb') && uri && suite && /debian\/?$/.test(uri) && !suite.includes('-'))
          return { uri, suite, signedBy: field('Signed-By') };
      }
    } else if (file.endsWith('.list')) {
      for (const line of text.split('\n')) {
        const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+/.exec(line.trim());
        if (m && /debian\/?$/.test(m[1]!) && !m[2]!.includes('-')) return { uri: m[1]!, suite: m[2]! };
      }
    }
  }
  return undefined;
}

/** The Debian archive URI this machine's apt already uses (the debian recipe fetches other suites from it). */
export function debianArchiveUri(): string {
  const src = debianBinarySource();
  if (!src) throw new AptError("cannot find this machine's Debian archive in /etc/apt (a deb entry for .../debian)");
  return src.uri;
}

/**
 * Makes sure `apt-get source` can fetch `pkg`: when apt knows no source for it, adds a deb-src entry for
 * the same Debian archive and suite that binary packages come from, then updates the lists.
 */
export function ensureSourceAvailable(pkg: string, log: (line: string) => void): void {
  if (sourceVersions(pkg).length) return;
  if (!isRoot())
    throw new AptError(`apt knows no source package '${pkg}': add a deb-src entry for Debian main, then apt-get update`);
  const src = debianBinarySource();
  if (!src) throw new AptError(`cannot find this machine's Debian archive in /etc/apt to add a deb-src entry for '${pkg}'`);
  const file = '/etc/apt/sources.list.d/typevisor-src.sources';
  if (!existsSync(file)) {
    const lines = ['Types: deb-src', `URIs: ${src.uri}`, `Suites: ${src.suite}`, 'Components: main'];
    if (src.signedBy) lines.push(`Signed-By: ${src.signedBy}`);
    writeFileSync(file, lines.join('\n') + '\n');
    log(`added ${file} (deb-src ${src.uri} ${src.suite} main)`);
  }
  updated = false;
  aptUpdateOnce(log);
  if (!sourceVersions(pkg).length) throw new AptError(`apt still knows no source package '${pkg}' after adding ${file}`);
}
