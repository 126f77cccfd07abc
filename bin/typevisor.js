#!/usr/bin/env node
// Runs the compiled CLI (dist/, made by `npm run build` and shipped in the npm package); only in a source
// checkout without a build (or with TYPEVISOR_FROM_SOURCE=1) does it fall back to the TypeScript sources via tsx.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
let main;
if (existsSync(compiled) && !process.env.TYPEVISOR_FROM_SOURCE) {
  ({ main } = await import(compiled));
} else {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    console.error(`typevisor: no build at ${compiled} and no tsx to run the sources: run 'npm run build'`);
    process.exit(1);
  }
  register();
  ({ main } = await import(new URL('../src/cli/main.ts', import.meta.url).href));
}
process.exitCode = await main(process.argv.slice(2));
