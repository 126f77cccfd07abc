/**
 * fast-check fuzzers over descriptor tables and available rings, random and structured-but-hostile. Properties:
 * the transport never throws into the host, never touches memory outside guest RAM (a GuestRam spy records every
 * attempt), and either processes each chain or enters DEVICE_NEEDS_RESET.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CHUNK_SIZE, GuestRam } from '../../../src/machine/memory.js';
import { VirtioRng } from '../../../src/devices/virtio/rng.js';
import { VirtioConsole } from '../../../src/devices/virtio/console.js';
import { VirtioBlk } from '../../../src/devices/virtio/blk.js';
import { VirtioBalloon } from '../../../src/devices/virtio/balloon.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../src/devices/virtio/regs.js';
import type { VirtioMmioDevice } from '../../../src/devices/virtio/mmio.js';
import { VirtioDriverMock } from './driver-mock.js';
import { MemoryBackend } from './memory-backend.js';
import { fuzzParams } from '../../helpers/fuzz.js';

const RAM_SIZE = 4 * 1024 * 1024;
const QUEUE_SIZE = 16;

/**
 * GuestRam that counts every access the device attempts outside RAM (before GuestRam itself refuses it), and
 * remembers the pages written so one RAM can serve every case of a property: `reset()` zeroes exactly those pages,
 * which leaves it as a fresh RAM at a fraction of the cost of allocating and collecting 4 MiB per case. A write
 * path this class does not see (a device writing through `chunk()` directly) marks the whole RAM dirty.
 */
class SpyRam extends GuestRam {
  outside = 0;
  private readonly dirty: Uint8Array;
  private readonly dirtyPages: number[] = [];
  private allDirty = false;
  private inSpyWrite = false;
  constructor(size: number) {
    super(size);
    this.dirty = new Uint8Array(size / PAGE);
  }
  private note(paddr: number, length: number): void {
    if (!Number.isSafeInteger(paddr) || !this.contains(paddr, length)) this.outside++;
  }
  private mark(paddr: number, length: number): void {
    if (!Number.isSafeInteger(paddr) || !Number.isSafeInteger(length) || length <= 0) return;
    const first = Math.max(0, Math.floor((paddr - this.base) / PAGE));
    const last = Math.min(this.dirty.length - 1, Math.floor((paddr - this.base + length - 1) / PAGE));
    for (let p = first; p <= last; p++) {
      if (!this.dirty[p]) {
        this.dirty[p] = 1;
        this.dirtyPages.push(p);
      }
    }
  }
  private spyWrite<T>(paddr: number, length: number, write: () => T): T {
    this.note(paddr, length);
    this.mark(paddr, length);
    const outer = this.inSpyWrite;
    this.inSpyWrite = true;
    try {
      return write();
    } finally {
      this.inSpyWrite = outer;
    }
  }
  override chunk(paddr: number, forWrite: boolean): DataView | null {
    if (forWrite && !this.inSpyWrite) this.allDirty = true;
    return super.chunk(paddr, forWrite);
  }
  override read(paddr: number, dst: Uint8Array): void {
    this.note(paddr, dst.length);
    super.read(paddr, dst);
  }
  override write(paddr: number, src: Uint8Array): void {
    this.spyWrite(paddr, src.length, () => super.write(paddr, src));
  }
  override readU16(paddr: number): number {
    this.note(paddr, 2);
    return super.readU16(paddr);
  }
  override readU32(paddr: number): number {
    this.note(paddr, 4);
    return super.readU32(paddr);
  }
  override writeU8(paddr: number, value: number): void {
    this.spyWrite(paddr, 1, () => super.writeU8(paddr, value));
  }
  override writeU16(paddr: number, value: number): void {
    this.spyWrite(paddr, 2, () => super.writeU16(paddr, value));
  }
  override writeU32(paddr: number, value: number): void {
    this.spyWrite(paddr, 4, () => super.writeU32(paddr, value));
  }
  override discard(paddr: number, length: number): number {
    return this.spyWrite(paddr, length, () => super.discard(paddr, length));
  }

  /** Back to a fresh RAM: every page written since the last reset zeroed, the outside count cleared. */
  reset(): void {
    for (let c = 0; c < Math.ceil(this.size / CHUNK_SIZE); c++) {
      const bytes = this.chunkBytes(c);
      if (!bytes) continue;
      if (this.allDirty) bytes.fill(0);
      else {
        const firstPage = (c * CHUNK_SIZE) / PAGE;
        for (const p of this.dirtyPages) {
          const rel = p - firstPage;
          if (rel >= 0 && rel < bytes.length / PAGE) bytes.fill(0, rel * PAGE, (rel + 1) * PAGE);
        }
      }
    }
    for (const p of this.dirtyPages) this.dirty[p] = 0;
    this.dirtyPages.length = 0;
    this.allDirty = false;
    this.outside = 0;
    if (verifyResets) {
      for (let c = 0; c < Math.ceil(this.size / CHUNK_SIZE); c++) {
        const bytes = this.chunkBytes(c);
        if (bytes)
          assert.ok(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).equals(zeroChunk), 'reset left a non-zero byte');
      }
    }
  }
}

const PAGE = 4096;
/** The suite's short runs check that every reset really restores a zeroed RAM; long campaigns trust it. */
const verifyResets = !process.env.TYPEVISOR_FUZZ_RUNS;
const zeroChunk = Buffer.alloc(CHUNK_SIZE);

type Kind = 'rng' | 'console' | 'blk' | 'balloon';

/** Queues the driver sets up: console has receive + transmit; balloon inflate, deflate, stats, reporting. */
const queuesOf = (kind: Kind): number => (kind === 'console' ? 2 : kind === 'balloon' ? 4 : 1);

/** The blk device's disk, reset between cases like the RAM. */
const disk = new MemoryBackend(1024 * 1024);

/** One RAM per device kind, reset between cases (see SpyRam). */
const rams = new Map<Kind, SpyRam>();

function rig(kind: Kind) {
  let ram = rams.get(kind);
  if (ram) ram.reset();
  else rams.set(kind, (ram = new SpyRam(RAM_SIZE)));
  const mock = new VirtioDriverMock(ram, ram.base, ram.base + 64 * 1024);
  const ctx = { ram, irq: mock.irq, name: kind };
  let dev: VirtioMmioDevice;
  if (kind === 'rng') dev = new VirtioRng(ctx, (b) => b.fill(7));
  else if (kind === 'console') dev = new VirtioConsole(ctx);
  else if (kind === 'balloon') dev = new VirtioBalloon(ctx);
  else {
    disk.reset();
    if (verifyResets)
      assert.ok(
        disk.data.every((b) => b === 0),
        'disk reset left a non-zero byte',
      );
    dev = new VirtioBlk(ctx, disk, { maxInflight: 4 });
  }
  mock.attach(dev).init(queuesOf(kind), undefined, QUEUE_SIZE);
  if (dev instanceof VirtioConsole) dev.input('x'.repeat(100));
  return { ram, mock, dev, kind };
}

// Addresses a hostile driver would try: inside RAM, straddling its end, below it, beyond 2^32 and 2^53.
const address = (ram: GuestRam) =>
  fc.oneof(
    fc.integer({ min: ram.base, max: ram.base + ram.size - 1 }),
    fc.integer({ min: ram.base + ram.size - 64, max: ram.base + ram.size + 64 }),
    fc.integer({ min: 0, max: ram.base }),
    fc.constantFrom(0, 2 ** 32 - 1, 2 ** 40, 2 ** 53 - 1, 2 ** 64 - 2 ** 11),
  );
const length = fc.oneof(
  fc.integer({ min: 0, max: 64 }),
  fc.integer({ min: 0, max: 4096 }),
  fc.constantFrom(0xffff_ffff, 0x8000_0000, 16 * 8192),
);
const flags = fc.integer({ min: 0, max: 7 });
const next = fc.oneof(fc.integer({ min: 0, max: QUEUE_SIZE - 1 }), fc.integer({ min: 0, max: 0xffff }));

interface Desc {
  addr: number;
  len: number;
  flags: number;
  next: number;
}
const desc = (ram: GuestRam): fc.Arbitrary<Desc> => fc.record({ addr: address(ram), len: length, flags, next });

function writeRawDesc(ram: GuestRam, table: number, i: number, d: Desc): void {
  const at = table + 16 * i;
  ram.writeU32(at, d.addr % 2 ** 32);
  ram.writeU32(at + 4, Math.floor(d.addr / 2 ** 32) % 2 ** 32);
  ram.writeU32(at + 8, d.len);
  ram.writeU16(at + 12, d.flags);
  ram.writeU16(at + 14, d.next);
}

async function settle(dev: VirtioMmioDevice): Promise<void> {
  if (dev instanceof VirtioBlk) await dev.whenIdle();
}

/** The common property: nothing thrown, nothing outside RAM, and every chain processed or NEEDS_RESET. */
async function check(r: ReturnType<typeof rig>, act: () => void, expectedChains: number): Promise<void> {
  assert.doesNotThrow(act);
  await settle(r.dev);
  assert.equal(r.ram.outside, 0, 'an access outside guest RAM was attempted');
  if (!r.dev.needsReset) {
    const q = r.mock.queues[0]!;
    const used = r.ram.readU16(q.used + 2);
    if (!(r.dev instanceof VirtioConsole)) assert.equal(used, expectedChains & 0xffff, 'every chain was used');
  }
  // Reads of every register stay harmless afterwards, and a reset always recovers.
  for (let off = 0; off < 0x200; off += 4) r.dev.read(off, 4);
  r.mock.init(queuesOf(r.kind), undefined, QUEUE_SIZE);
  assert.equal(r.dev.needsReset, false);
}

for (const kind of ['rng', 'console', 'blk', 'balloon'] as const) {
  test(`fuzz (${kind}): random bytes in the descriptor table, indirect area and available ring`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 16 * QUEUE_SIZE, maxLength: 16 * QUEUE_SIZE }),
        fc.uint8Array({ minLength: 0, maxLength: 512 }),
        fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: QUEUE_SIZE }),
        fc.integer({ min: 0, max: 0xffff }),
        async (table, indirectArea, heads, availIdx) => {
          const r = rig(kind);
          const q = r.mock.queues[0]!;
          r.ram.write(q.desc, table);
          r.ram.write(r.ram.base + 0x20_0000, indirectArea);
          heads.forEach((h, i) => r.ram.writeU16(q.avail + 4 + 2 * i, h));
          await check(
            r,
            () => {
              r.ram.writeU16(q.avail + 2, availIdx);
              r.mock.notify(0);
            },
            availIdx,
          );
        },
      ),
      fuzzParams(kind === 'blk' ? 150 : 300),
    );
  });

  test(`fuzz (${kind}): structured hostile chains (loops, ranges, huge lengths, nesting, direction, wild indices)`, async () => {
    const ram0 = new GuestRam(RAM_SIZE);
    const indirectTable = ram0.base + 0x20_0000;
    await fc.assert(
      fc.asyncProperty(
        fc.array(desc(ram0), { minLength: QUEUE_SIZE, maxLength: QUEUE_SIZE }),
        fc.array(desc(ram0), { minLength: 0, maxLength: 8 }),
        fc.array(fc.integer({ min: 0, max: QUEUE_SIZE + 2 }), { minLength: 1, maxLength: QUEUE_SIZE }),
        fc.oneof(fc.integer({ min: 1, max: QUEUE_SIZE }), fc.integer({ min: 0, max: 0xffff })),
        fc.boolean(),
        async (descs, indirect, heads, availCount, pointAtIndirect) => {
          const r = rig(kind);
          const q = r.mock.queues[0]!;
          // Optionally aim some descriptors at a real indirect table full of hostile entries.
          descs.forEach((d, i) => {
            const aimed =
              pointAtIndirect && i % 3 === 0
                ? { ...d, addr: indirectTable, len: 16 * Math.max(indirect.length, 1), flags: d.flags | VIRTQ_DESC_F_INDIRECT }
                : d;
            writeRawDesc(r.ram, q.desc, i, aimed);
          });
          indirect.forEach((d, i) => writeRawDesc(r.ram, indirectTable, i, d));
          heads.forEach((h, i) => r.ram.writeU16(q.avail + 4 + 2 * i, h));
          await check(
            r,
            () => {
              r.ram.writeU16(q.avail + 2, availCount);
              r.mock.notify(0);
            },
            availCount,
          );
        },
      ),
      fuzzParams(kind === 'blk' ? 150 : 300),
    );
  });
}

test('fuzz: well-formed chains of random shapes are all processed (no false positives)', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 4 }),
          fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 4 }),
          fc.boolean(),
        ),
        {
          minLength: 1,
          maxLength: 10,
        },
      ),
      (chains) => {
        const r = rig('rng');
        chains.forEach(([outs, ins, indirect], i) => {
          // Fall back to an indirect table when the ring runs short of free descriptors, as Linux does.
          const stillToPost = chains.length - i - 1;
          const forceIndirect = r.mock.queues[0]!.free.length - (outs.length + ins.length) < stillToPost;
          r.mock.post(
            0,
            outs.map((n) => new Uint8Array(n)),
            ins,
            { indirect: indirect || forceIndirect },
          );
        });
        r.mock.kick(0);
        assert.equal(r.dev.needsReset, false, r.dev.lastProtocolError ?? '');
        const used = r.mock.collect(0);
        assert.equal(used.length, chains.length);
        used.forEach((u, i) =>
          assert.equal(
            u.len,
            chains[i]![1].reduce((a, b) => a + b, 0),
          ),
        );
        assert.equal(r.ram.outside, 0);
      },
    ),
    fuzzParams(200),
  );
});

// Keep the flag constants referenced for readers of the generators above.
void [VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE];
