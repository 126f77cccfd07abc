import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root, whether this module runs from src/ under tsx or from dist/src. */
export const repoRoot = resolve(here, here.split(/[\\/]/).includes('dist') ? '../../..' : '../..');
/** Recipe inputs (config fragments, scripts) live in guests/ at the repository root. */
export const recipesDir = join(repoRoot, 'guests');

/** `${TYPEVISOR_CACHE:-${XDG_CACHE_HOME:-~/.cache}/typevisor}`: the root of everything typevisor caches. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TYPEVISOR_CACHE) return resolve(env.TYPEVISOR_CACHE);
  const xdg = env.XDG_CACHE_HOME ? resolve(env.XDG_CACHE_HOME) : join(homedir(), '.cache');
  return join(xdg, 'typevisor');
}

/** Where guest builds live: <cache>/guests/<name>/<hash>/ plus <name>/current.json. */
export function guestsCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheRoot(env), 'guests');
}
