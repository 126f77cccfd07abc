// The guest cache: <root>/<name>/<hash>/ holds one complete build (outputs + manifest.json), and
// <root>/<name>/current.json names the entry the last `guest build` produced or found. Entries only
// ever appear by rename, so a killed build leaves at most a .build-* scratch folder, cleaned up later.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { installedVersion, sourceVersions } from './apt.js';
import type { GuestName, Recipe } from './recipe.js';

export interface CacheKeyInputs {
  name: GuestName;
  revision: number;
  files: Record<string, string>;
  packages: Record<string, string>;
  sources: Record<string, string[]>;
  deps: Record<string, string>;
}

export interface Manifest {
  name: GuestName;
  hash: string;
  key: CacheKeyInputs;
  outputs: string[];
  builtAt: string;
  buildSeconds: number;
}

export interface CurrentPointer {
  name: GuestName;
  hash: string;
}

function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  if (statSync(dir).isFile()) return [dir];
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

export function cacheKeyInputs(recipe: Recipe, recipesDir: string, depHashes: Record<string, string>): CacheKeyInputs {
  const files: Record<string, string> = {};
  for (const input of recipe.inputs) {
    for (const f of filesUnder(join(recipesDir, input))) {
      // The executable bit matters for scripts copied into images.
      const exec = (statSync(f).mode & 0o111) !== 0 ? '+x' : '';
      files[relative(recipesDir, f)] = sha256(readFileSync(f)) + exec;
    }
  }
  const packages: Record<string, string> = {};
  for (const p of recipe.keyPackages) packages[p] = installedVersion(p) ?? 'not-installed';
  const sources: Record<string, string[]> = {};
  for (const s of recipe.keySources ?? []) sources[s] = sourceVersions(s);
  const deps: Record<string, string> = {};
  for (const d of recipe.deps) deps[d] = depHashes[d] ?? 'missing';
  return { name: recipe.name, revision: recipe.revision, files, packages, sources, deps };
}

/** 16 hex digits of the SHA-256 of the key inputs (canonical JSON: keys in insertion order, built sorted). */
export function cacheHash(key: CacheKeyInputs): string {
  return sha256(JSON.stringify(key)).slice(0, 16);
}

export class GuestCache {
  constructor(readonly root: string) {}

  entryDir(name: GuestName, hash: string): string {
    return join(this.root, name, hash);
  }

  /** The manifest of a complete entry, or undefined when the entry is absent or incomplete. */
  lookup(name: GuestName, hash: string): Manifest | undefined {
    const dir = this.entryDir(name, hash);
    try {
      const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
      return m.hash === hash && m.outputs.every((o) => existsSync(join(dir, o))) ? m : undefined;
    } catch {
      return undefined;
    }
  }

  current(name: GuestName): CurrentPointer | undefined {
    try {
      const p = JSON.parse(readFileSync(join(this.root, name, 'current.json'), 'utf8')) as CurrentPointer;
      return typeof p.hash === 'string' && /^[0-9a-f]{16}$/.test(p.hash) ? p : undefined;
    } catch {
      return undefined;
    }
  }

  setCurrent(name: GuestName, hash: string): void {
    writeAtomic(join(this.root, name, 'current.json'), JSON.stringify({ name, hash } satisfies CurrentPointer) + '\n');
  }

  /** A fresh scratch folder for building one entry: <name>/.build-<hash>-<pid>. */
  scratch(name: GuestName, hash: string): string {
    const dir = join(this.root, name, `.build-${hash}-${process.pid}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  /**
   * Moves a finished output folder into place. An existing complete entry is kept (another process got
   * there first) unless `replace` (a forced rebuild): then it is swapped out by rename, then deleted.
   * Returns whether outDir became the entry.
   */
  commit(name: GuestName, hash: string, outDir: string, manifest: Manifest, replace = false): boolean {
    writeFileSync(join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    const dest = this.entryDir(name, hash);
    if (this.lookup(name, hash) && !replace) return false;
    const old = join(this.root, name, `.old-${hash}-${process.pid}`);
    if (existsSync(dest)) renameSync(dest, old);
    renameSync(outDir, dest);
    rmSync(old, { recursive: true, force: true });
    return true;
  }

  /** Removes scratch folders of builds whose process is gone, and all but the `keep` newest entries. */
  prune(name: GuestName, keepHash: string, keep = 3): void {
    const dir = join(this.root, name);
    if (!existsSync(dir)) return;
    const entries: { hash: string; mtime: number }[] = [];
    for (const f of readdirSync(dir)) {
      const scratch = /^\.(?:build|old)-[0-9a-f]{16}-(\d+)$/.exec(f);
      if (scratch) {
        if (!processAlive(Number(scratch[1]))) rmSync(join(dir, f), { recursive: true, force: true });
      } else if (/^[0-9a-f]{16}$/.test(f) && f !== keepHash) {
        entries.push({ hash: f, mtime: statSync(join(dir, f)).mtimeMs });
      }
    }
    entries.sort((a, b) => b.mtime - a.mtime);
    for (const e of entries.slice(keep - 1)) rmSync(join(dir, e.hash), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Writes a file by writing a temporary sibling and renaming it over the target. */
export function writeAtomic(path: string, text: string): void {
  mkdirSync(join(path, '..'), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}
