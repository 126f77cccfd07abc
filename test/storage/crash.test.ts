/**
 * Crash safety: a child process writing through the qcow2 backend is SIGKILLed at random moments, many
 * times, on the same image. After every kill `qemu-img check` finds no corruption and every write that was
 * flushed before the kill reads back intact. After repair (lazy refcounts: our repair-on-open; otherwise
 * `check -r leaks`) qemu-img check is fully clean.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDisk, openDisk, Qcow2Image } from '../../src/storage/index.js';
import { fromDist } from '../helpers/paths.js';
import { fillRandom, qemu, rng, tempDir, type Op } from './helpers.js';

const { dir, cleanup } = tempDir('crash');
after(cleanup);
const here = dirname(fileURLToPath(import.meta.url));
const childScript = join(here, fromDist ? 'crash-child.js' : 'crash-child.ts');
const SIZE = 16 * 2 ** 20;

/** Runs the child until `ms` after it is ready, then SIGKILLs it. */
function runAndKill(image: string, journal: string, seed: number, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = fromDist ? [childScript] : ['--import', 'tsx', childScript];
    const child = spawn(process.execPath, [...args, image, journal, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let timer: NodeJS.Timeout | undefined;
    child.stdout.once('data', () => {
      timer = setTimeout(() => child.kill('SIGKILL'), ms);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') resolve();
      else reject(new Error(`child exited on its own (code ${code}): ${stderr}`));
    });
  });
}

type JournalEntry = Op | { flushed: number } | { start: true };

/**
 * Replays the journal, one process segment at a time: ops covered by that process's last flush are
 * certain (applied to the model, clearing uncertainty); later ones may or may not have reached the disk,
 * so their ranges stay uncertain until a later certain op overwrites them.
 */
function expectedState(base: Uint8Array, journal: string): { model: Uint8Array; uncertain: Uint8Array } {
  const entries = readFileSync(journal, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as JournalEntry);
  const model = base.slice();
  const uncertain = new Uint8Array(base.length);
  const segments: (Op | { flushed: number })[][] = [];
  for (const e of entries) {
    if ('start' in e) segments.push([]);
    else segments.at(-1)?.push(e);
  }
  for (const seg of segments) {
    let flushed = 0;
    for (const e of seg) if ('flushed' in e) flushed = e.flushed;
    let n = 0;
    for (const e of seg) {
      if ('flushed' in e || e.op === 'flush') continue;
      n++;
      if (n > flushed) {
        uncertain.fill(1, e.offset, e.offset + e.length);
        continue;
      }
      if (e.op === 'write') model.set(fillRandom(new Uint8Array(e.length), rng(e.seed)), e.offset);
      else model.fill(0, e.offset, e.offset + e.length);
      uncertain.fill(0, e.offset, e.offset + e.length);
    }
  }
  return { model, uncertain };
}

async function crashLoop(
  name: string,
  opts: { lazy: boolean; backing: boolean; iterations: number; seed: number },
): Promise<void> {
  const image = join(dir, `${name}.qcow2`);
  const journal = join(dir, `${name}.journal`);
  writeFileSync(journal, '');
  let base: Uint8Array = new Uint8Array(SIZE);
  if (opts.backing) {
    base = fillRandom(new Uint8Array(SIZE), rng(opts.seed));
    writeFileSync(join(dir, `${name}-base.raw`), base);
    await createDisk(image, { format: 'qcow2', backingFile: `${name}-base.raw`, backingFormat: 'raw', lazyRefcounts: opts.lazy });
  } else {
    await createDisk(image, { format: 'qcow2', size: SIZE, lazyRefcounts: opts.lazy });
  }
  const rand = rng(opts.seed);
  let sawDirty = false;
  for (let i = 0; i < opts.iterations; i++) {
    await runAndKill(image, journal, opts.seed * 1000 + i, 150 + Math.floor(rand() * 450));
    const check = qemu('qemu-img', 'check', image);
    assert.ok(check.status === 0 || check.status === 3, `iteration ${i}: qemu-img check exit ${check.status}\n${check.out}`);
    assert.doesNotMatch(check.out, /ERROR/, `iteration ${i}: corruption`);
    const { model, uncertain } = expectedState(base, journal);
    const disk = (await openDisk(image, { readOnly: true })) as Qcow2Image;
    sawDirty ||= disk.dirty;
    const back = new Uint8Array(SIZE);
    await disk.read(0, back);
    await disk.close();
    let bad = -1;
    for (let b = 0; b < SIZE; b++) {
      if (uncertain[b] === 0 && back[b] !== model[b]) {
        bad = b;
        break;
      }
    }
    assert.equal(bad, -1, `iteration ${i}: flushed data at byte ${bad} lost`);
  }
  if (opts.lazy) {
    assert.ok(sawDirty, 'kills left the image dirty at least once');
    // Repair-on-open: a read-write open of the dirty image rebuilds refcounts and clears the dirty bit.
    const disk = (await openDisk(image)) as Qcow2Image;
    assert.equal(disk.dirty, false);
    await disk.close();
  } else {
    const disk = (await openDisk(image, { forRepair: true })) as Qcow2Image;
    const report = await disk.check('leaks');
    assert.equal(report.corruptions, 0);
    await disk.close();
  }
  const final = qemu('qemu-img', 'check', image);
  assert.equal(final.status, 0, final.out);
}

test(
  'SIGKILL during heavy writes: no corruption, flushed writes intact (lazy refcounts, raw backing file)',
  { timeout: 300_000 },
  async () => {
    await crashLoop('lazy', { lazy: true, backing: true, iterations: 12, seed: 11 });
  },
);

test(
  'SIGKILL during heavy writes: no corruption, flushed writes intact (strict refcount ordering)',
  { timeout: 300_000 },
  async () => {
    await crashLoop('strict', { lazy: false, backing: false, iterations: 12, seed: 23 });
  },
);
