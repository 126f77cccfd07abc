#!/usr/bin/env node
// The kill -9 campaign (issue 17): `npm run kill-campaign -- [--kills N] [--seed S] [--disk-mib M] [--no-build]`
// SIGKILLs a process-mode VM N times while the guest writes to a qcow2 overlay, then checks the overlay with
// qemu-img and every flushed record after each kill (test/storage/kill-campaign.ts describes a round). Prints a
// line per kill and a summary; exits 1 if any image was corrupt, any flushed write was lost, or the final leak
// repair (`typevisor disk check -r leaks`) did not leave a clean image with every flushed write.
// docs/security.md records the last long campaign.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const root = new URL('..', import.meta.url).pathname;
const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '100' },
    seed: { type: 'string' },
    'disk-mib': { type: 'string', default: '256' },
    'max-delay-ms': { type: 'string', default: '6000' },
    'no-build': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log('usage: npm run kill-campaign -- [--kills N] [--seed S] [--disk-mib M] [--max-delay-ms MS] [--no-build]');
  process.exit(0);
}
const whole = (name, text, min) => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} takes a whole number >= ${min}, got ${text}`);
    process.exit(2);
  }
  return n;
};
const kills = whole('kills', values.kills, 1);
const seed = values.seed === undefined ? Date.now() % 1_000_000 : whole('seed', values.seed, 0);
const diskMiB = whole('disk-mib', values['disk-mib'], 1);
const maxDelayMs = whole('max-delay-ms', values['max-delay-ms'], 500);

if (!values['no-build']) {
  const b = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
  if (b.status !== 0) process.exit(b.status ?? 1);
}
const { runKillCampaign, summary } = await import(join(root, 'dist/test/storage/kill-campaign.js'));
console.log(`kill campaign: ${kills} kills, seed ${seed} (--seed ${seed} replays the layout and delays)`);
const result = await runKillCampaign({ kills, seed, diskMiB, maxDelayMs, log: (line) => console.log(line) });
console.log(summary(result));
const repaired = result.afterRepair;
const clean = repaired && repaired.check.status === 0 && repaired.audit.lostSectors + repaired.audit.corruptSectors === 0;
process.exit(result.corruptImages === 0 && result.lostFlushedRecords === 0 && clean ? 0 : 1);
