// `typevisor guest build`: resolves the requested recipes plus their dependencies, and for each one either
// finds its cache entry (same input hash) or builds it in a scratch folder and renames it into place.
import { appendFileSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { ensurePackages } from './apt.js';
import { cacheHash, cacheKeyInputs, GuestCache, type Manifest } from './cache.js';
import { runLogged } from './exec.js';
import { guestsCacheDir, recipesDir } from './paths.js';
import { formatElapsed, Progress } from './progress.js';
import { DEFAULT_GUESTS, GUEST_NAMES, type BuildContext, type GuestName, type Recipe } from './recipe.js';
import { RECIPES } from './recipes/index.js';

export interface BuildOptions {
  /** Rebuild even when a cache entry exists. */
  force?: boolean;
  progress?: Progress;
  cacheDir?: string;
}

export interface BuildResult {
  name: GuestName;
  hash: string;
  cached: boolean;
  dir: string;
  seconds: number;
}

export class GuestBuildError extends Error {
  constructor(
    readonly guest: GuestName,
    cause: Error,
  ) {
    super(`${guest}: ${cause.message}`);
    this.name = 'GuestBuildError';
  }
}

/** The requested names plus everything they depend on, in build order. */
export function buildOrder(names: readonly GuestName[]): GuestName[] {
  const wanted = new Set<GuestName>();
  const visit = (n: GuestName) => {
    if (wanted.has(n)) return;
    for (const d of RECIPES[n].deps) visit(d);
    wanted.add(n);
  };
  for (const n of names.length ? names : DEFAULT_GUESTS) visit(n);
  return GUEST_NAMES.filter((n) => wanted.has(n));
}

export async function buildGuests(names: readonly GuestName[], opts: BuildOptions = {}): Promise<BuildResult[]> {
  const cache = new GuestCache(opts.cacheDir ?? guestsCacheDir());
  const progress = opts.progress ?? new Progress();
  const hashes: Record<string, string> = {};
  const results: BuildResult[] = [];
  const requested = new Set(names.length ? names : DEFAULT_GUESTS);
  for (const name of buildOrder(names)) {
    const recipe = RECIPES[name];
    const note = (line: string) => progress.say(`${name}: ${line}`);
    try {
      ensurePackages(recipe.packages, note);
      recipe.prepare?.(note);
      const key = cacheKeyInputs(recipe, recipesDir, hashes);
      const hash = cacheHash(key);
      hashes[name] = hash;
      const hit = !(opts.force && requested.has(name)) && cache.lookup(name, hash);
      if (hit) {
        progress.say(`${name}: cache hit (${hash})`);
        cache.setCurrent(name, hash);
        results.push({ name, hash, cached: true, dir: cache.entryDir(name, hash), seconds: 0 });
        continue;
      }
      const seconds = await buildOne(recipe, hash, key, cache, progress, hashes, opts.force === true);
      cache.setCurrent(name, hash);
      cache.prune(name, hash);
      progress.say(`${name}: built (${hash}) in ${formatElapsed(seconds * 1000)}`);
      results.push({ name, hash, cached: false, dir: cache.entryDir(name, hash), seconds });
    } catch (err) {
      progress.end();
      throw new GuestBuildError(name, err instanceof Error ? err : new Error(String(err)));
    }
  }
  return results;
}

async function buildOne(
  recipe: Recipe,
  hash: string,
  key: Manifest['key'],
  cache: GuestCache,
  progress: Progress,
  hashes: Record<string, string>,
  replace: boolean,
): Promise<number> {
  cache.prune(recipe.name, hash);
  const scratch = cache.scratch(recipe.name, hash);
  const work = join(scratch, 'work');
  const out = join(scratch, 'out');
  mkdirSync(work);
  mkdirSync(out);
  const logFile = join(scratch, 'build.log');
  appendFileSync(logFile, `typevisor guest build ${recipe.name} (${hash})\n${JSON.stringify(key, null, 2)}\n`);
  const ctx: BuildContext = {
    work,
    out,
    recipeDir: join(recipesDir, recipe.name),
    recipesDir,
    jobs: Math.max(1, availableParallelism()),
    depDir: (name) => cache.entryDir(name, hashes[name]!),
    run: (cmd, args, o = {}) =>
      runLogged(cmd, args, { cwd: o.cwd ?? work, env: o.env, input: o.input }, logFile, (l) => progress.activity(l)),
    log: (line) => {
      appendFileSync(logFile, `# ${line}\n`);
      progress.activity(line);
    },
  };
  progress.begin(recipe.name, `${hash}, log: ${logFile}`);
  await recipe.build(ctx);
  const ms = progress.end();
  const missing = recipe.outputs.filter((o) => !existsSync(join(out, o)));
  if (missing.length) throw new Error(`build finished without producing ${missing.join(', ')}`);
  copyFileSync(logFile, join(out, 'build.log'));
  const seconds = Math.round(ms / 100) / 10;
  const manifest: Manifest = {
    name: recipe.name,
    hash,
    key,
    outputs: [...recipe.outputs],
    builtAt: new Date().toISOString(),
    buildSeconds: seconds,
  };
  cache.commit(recipe.name, hash, out, manifest, replace);
  // A kernel tree is tens of thousands of files: say why we pause, and don't block the event loop.
  progress.say(`${recipe.name}: removing the build tree`);
  await rm(scratch, { recursive: true, force: true });
  return seconds;
}
