#!/usr/bin/env node
// Runs the compiled CLI (npm run build); from a source checkout without a build it falls back to tsx.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
let main;
if (existsSync(compiled) && !process.env.TYPEVISOR_FROM_SOURCE) {
  ({ main } = await import(compiled));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import(new URL('../src/cli/main.ts', import.meta.url).href));
}
process.exitCode = await main(process.argv.slice(2));
