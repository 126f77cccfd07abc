import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** True when running compiled JS from dist/, false under tsx from source. */
export const fromDist = here.split(/[\\/]/).includes('dist');
/** The repository root, whether tests run from dist/test or from test/ under tsx. */
export const repoRoot = resolve(here, fromDist ? '../../..' : '../..');

/** argv (after process.execPath) that runs the typevisor CLI in the same mode as the tests. */
export function cliArgs(...args: string[]): string[] {
  return fromDist
    ? [join(repoRoot, 'dist/src/cli/main.js'), ...args]
    : ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), ...args];
}

/** argv that runs the built CLI (dist/); throws when there is no build. */
export function builtCliArgs(...args: string[]): string[] {
  const main = join(repoRoot, 'dist/src/cli/main.js');
  if (!existsSync(main)) throw new Error(`no build at ${main}: run 'npx tsc -p tsconfig.json' first`);
  return [main, ...args];
}
