/**
 * The kill campaign's checker (test/storage/kill-campaign.ts) against the writer itself: the guest writer
 * (fixtures/kill-writer.c) built for the host writes two rounds of records into a plain file over random
 * "backing" bytes, and the audit, using only the reported flush marks, finds every flushed sector intact. Then
 * it must catch each kind of damage: a flushed sector rolled back to older data (a lost write), garbage where
 * only backing data may be, a torn writer sector, and a whole writer sector at the wrong LBA.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';
import { requireTool } from '../helpers/require.js';
import { auditImage, newestFlushed, parseReports, recordId, SECTOR, type RoundLog } from './kill-campaign.js';

const SEED = 1234567;
const DISK = 8 << 20;
const TOTAL = DISK / SECTOR;

function sectorAt(file: string, s: number): Buffer {
  return readFileSync(file).subarray(s * SECTOR, (s + 1) * SECTOR);
}
function putSector(file: string, s: number, data: Buffer): void {
  const b = readFileSync(file);
  data.copy(b, s * SECTOR);
  writeFileSync(file, b);
}

test('kill campaign audit: the host build of the writer checks out; lost, garbage, torn and misplaced sectors are caught', (t) => {
  requireTool('gcc', 'gcc');
  const dir = mkdtempSync(join(tmpdir(), 'tv-killaudit-'));
  try {
    const writer = join(dir, 'kill-writer');
    const built = spawnSync('gcc', ['-O2', '-Wall', '-o', writer, join(repoRoot, 'test/storage/fixtures/kill-writer.c')], {
      encoding: 'utf8',
    });
    assert.equal(built.status, 0, built.stderr);
    const backing = join(dir, 'backing');
    writeFileSync(backing, randomBytes(DISK / 2)); // past its end the disk reads zeros, as a larger qcow2 overlay does
    const disk = join(dir, 'disk');
    copyFileSync(backing, disk);
    truncateSync(disk, DISK);
    const rounds: RoundLog[] = [];
    const snapshots: string[] = [];
    for (const [round, records] of [
      [1, 60],
      [2, 45],
    ] as const) {
      snapshots.push(join(dir, `before-${round}`));
      copyFileSync(disk, snapshots.at(-1)!);
      const report = join(dir, `report-${round}`);
      writeFileSync(report, '');
      const r = spawnSync(writer, [disk, String(SEED), String(round), '0', report, String(records)], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const lines = readFileSync(report, 'utf8');
      const rep = parseReports(lines, round);
      assert.ok(rep.started && rep.errors.length === 0);
      assert.ok(rep.flushed > 0 && rep.flushed <= records, lines);
      // Records after the last flush landed too: the audit must accept them as unflushed writes.
      rounds.push({ round, flushed: rep.flushed });
    }
    t.diagnostic(`flush marks: ${rounds.map((r) => `round ${r.round} record ${r.flushed}`).join(', ')}`);

    const clean = auditImage(disk, backing, SEED, rounds);
    assert.deepEqual(clean.firstProblems, []);
    assert.equal(clean.lostSectors, 0);
    assert.equal(clean.corruptSectors, 0);
    assert.ok(clean.flushedSectorsIntact > 100, `only ${clean.flushedSectorsIntact} flushed sectors`);

    const expected = newestFlushed(SEED, rounds, TOTAL);
    // A flushed round-2 sector rolled back to what it held before round 2: a lost flushed write.
    const s2 = expected.findIndex((id) => id >= recordId(2, 1));
    assert.ok(s2 >= 0);
    const damaged = join(dir, 'damaged');
    copyFileSync(disk, damaged);
    putSector(damaged, s2, sectorAt(snapshots[1]!, s2));
    const lost = auditImage(damaged, backing, SEED, rounds);
    assert.equal(lost.lostSectors, 1);
    assert.equal(lost.lostRecords.length, 1);
    assert.match(lost.lostRecords[0]!, /^round 2 record \d+$/);

    // Garbage in a sector no record ever covered (backing data expected there).
    const untouched = expected.findIndex(
      (id, s) => id === -1 && !sectorAt(disk, s).subarray(0, 8).equals(Buffer.from('TVKILL01')),
    );
    copyFileSync(disk, damaged);
    putSector(damaged, untouched, randomBytes(SECTOR));
    const garbage = auditImage(damaged, backing, SEED, rounds);
    assert.equal(garbage.corruptSectors, 1);
    assert.equal(garbage.lostSectors, 0);

    // A torn writer sector: one byte of filler changed.
    copyFileSync(disk, damaged);
    const torn = sectorAt(disk, s2);
    torn[300] ^= 0xff;
    putSector(damaged, s2, torn);
    assert.ok(auditImage(damaged, backing, SEED, rounds).corruptSectors >= 1);

    // A whole writer sector written at the wrong place (a misdirected write).
    copyFileSync(disk, damaged);
    putSector(damaged, untouched, sectorAt(disk, s2));
    const misplaced = auditImage(damaged, backing, SEED, rounds);
    assert.equal(misplaced.corruptSectors, 1);
    assert.match(misplaced.firstProblems[0]!, /written for LBA/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
