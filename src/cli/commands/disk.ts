/**
 * `typevisor disk create|info|check|convert`, in the manner of qemu-img.
 * Exit codes follow qemu-img: check returns 0 clean, 2 corruptions, 3 leaks only, 1 check failed,
 * 63 format without checks; other verbs 0 success, 1 failure, 2 usage error.
 */
import { rm } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import {
  Qcow2Image,
  StorageError,
  createDisk,
  formatSize,
  openDisk,
  parseSize,
  probeFormat,
  type BlockBackend,
  type DiskFormat,
} from '../../storage/index.js';
import { isZero } from '../../storage/raw.js';

export const summary = 'create, inspect, check and convert disk images (raw, qcow2)';

const USAGE = `usage:
  typevisor disk create -f qcow2|raw [-b BACKING [-F FMT]] [-o cluster_size=N,lazy_refcounts=on] PATH [SIZE]
  typevisor disk info [--json] [-f FMT] PATH
  typevisor disk check [-r leaks|all] [--json] [-f FMT] PATH
  typevisor disk convert [-f FMT] -O raw|qcow2 [-o cluster_size=N] [-p] SRC DST

SIZE is bytes or a number with a K, M, G or T suffix (binary units).`;

class UsageError extends Error {}

interface Parsed {
  flags: Map<string, string | true>;
  positional: string[];
}

/** Tiny getopt: `valued` lists the flags that take an argument. */
function parseArgs(argv: string[], valued: string[]): Parsed {
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('-') && a.length > 1) {
      if (valued.includes(a)) {
        const v = argv[++i];
        if (v === undefined) throw new UsageError(`option ${a} needs a value`);
        flags.set(a, v);
      } else flags.set(a, true);
    } else positional.push(a);
  }
  return { flags, positional };
}

function formatFlag(p: Parsed, flag: string): DiskFormat | undefined {
  const v = p.flags.get(flag);
  if (v === undefined) return undefined;
  if (v !== 'raw' && v !== 'qcow2') throw new UsageError(`unknown format '${String(v)}' (raw or qcow2)`);
  return v;
}

function parseOptions(text: string | true | undefined): { clusterSize?: number; lazyRefcounts?: boolean; refcountBits?: number } {
  const out: { clusterSize?: number; lazyRefcounts?: boolean; refcountBits?: number } = {};
  if (typeof text !== 'string') return out;
  for (const kv of text.split(',')) {
    const [k, v] = kv.split('=');
    if (k === 'cluster_size' && v) out.clusterSize = parseSize(v);
    else if (k === 'lazy_refcounts' && v) out.lazyRefcounts = v === 'on' || v === 'true';
    else if (k === 'refcount_bits' && v) out.refcountBits = Number(v);
    else throw new UsageError(`unknown option '${kv}' (cluster_size, lazy_refcounts, refcount_bits)`);
  }
  return out;
}

async function create(argv: string[]): Promise<number> {
  const p = parseArgs(argv, ['-f', '-b', '-F', '-o']);
  const format = formatFlag(p, '-f') ?? 'raw';
  const [path, sizeText] = p.positional;
  if (!path || p.positional.length > 2) throw new UsageError('create needs PATH and SIZE');
  const backingFile = p.flags.get('-b');
  if (backingFile === undefined && sizeText === undefined) throw new UsageError('create needs a SIZE');
  const size = sizeText === undefined ? undefined : parseSize(sizeText);
  await createDisk(path, {
    format,
    size,
    backingFile: typeof backingFile === 'string' ? backingFile : undefined,
    backingFormat: formatFlag(p, '-F'),
    ...parseOptions(p.flags.get('-o')),
  });
  const disk = await openDisk(path, { format, readOnly: true });
  const opts = disk instanceof Qcow2Image ? ` cluster_size=${disk.clusterSize}` : '';
  const backing = typeof backingFile === 'string' ? ` backing_file=${backingFile}` : '';
  console.log(`Formatting '${path}', fmt=${format} size=${disk.size}${backing}${opts}`);
  await disk.close();
  return 0;
}

interface ImageInfo {
  filename: string;
  format: string;
  virtualSize: number;
  actualSize: number;
  clusterSize?: number;
  backingFilename?: string;
  backingFormat?: string;
  dirty?: boolean;
  corrupt?: boolean;
  lazyRefcounts?: boolean;
  refcountBits?: number;
  compat?: string;
  backingImage?: ImageInfo;
}

async function describe(disk: BlockBackend, filename: string): Promise<ImageInfo> {
  const info: ImageInfo = {
    filename,
    format: disk.format,
    virtualSize: disk.size,
    actualSize: await disk.allocatedBytes(),
  };
  if (disk instanceof Qcow2Image) {
    const h = disk.header;
    info.clusterSize = disk.clusterSize;
    info.compat = h.version === 3 ? '1.1' : '0.10';
    info.dirty = disk.dirty;
    info.corrupt = disk.corrupt;
    info.lazyRefcounts = disk.lazyRefcounts;
    info.refcountBits = 2 ** h.refcountOrder;
    if (h.backingFile !== null) {
      info.backingFilename = h.backingFile;
      if (h.backingFormat) info.backingFormat = h.backingFormat;
      if (disk.backing) info.backingImage = await describe(disk.backing, resolve(filename, '..', h.backingFile));
    }
  }
  return info;
}

function printInfo(info: ImageInfo, indent = ''): void {
  const line = (s: string): void => console.log(indent + s);
  line(`image: ${info.filename}`);
  line(`file format: ${info.format}`);
  line(`virtual size: ${formatSize(info.virtualSize)} (${info.virtualSize} bytes)`);
  line(`disk size: ${formatSize(info.actualSize)}`);
  if (info.clusterSize !== undefined) line(`cluster_size: ${info.clusterSize}`);
  if (info.backingFilename !== undefined) line(`backing file: ${info.backingFilename}`);
  if (info.backingFormat !== undefined) line(`backing file format: ${info.backingFormat}`);
  if (info.format === 'qcow2') {
    line('Format specific information:');
    line(`    compat: ${info.compat}`);
    line(`    lazy refcounts: ${info.lazyRefcounts}`);
    line(`    refcount bits: ${info.refcountBits}`);
    line(`    dirty: ${info.dirty}`);
    line(`    corrupt: ${info.corrupt}`);
  }
  if (info.backingImage) {
    line('backing chain:');
    printInfo(info.backingImage, indent + '    ');
  }
}

/** `qemu-img info --output=json`'s shape and keys, so scripts written for qemu-img read ours unchanged. */
function qemuInfoJson(info: ImageInfo): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (info.backingFormat !== undefined) out['backing-filename-format'] = info.backingFormat;
  out['virtual-size'] = info.virtualSize;
  out.filename = info.filename;
  if (info.clusterSize !== undefined) out['cluster-size'] = info.clusterSize;
  out.format = info.format;
  out['actual-size'] = info.actualSize;
  if (info.format === 'qcow2') {
    out['format-specific'] = {
      type: 'qcow2',
      data: {
        compat: info.compat,
        'compression-type': 'zlib',
        'lazy-refcounts': info.lazyRefcounts,
        'refcount-bits': info.refcountBits,
        corrupt: info.corrupt,
        'extended-l2': false,
      },
    };
  }
  if (info.backingFilename !== undefined) {
    out['full-backing-filename'] = isAbsolute(info.backingFilename)
      ? info.backingFilename
      : resolve(dirname(info.filename), info.backingFilename);
    out['backing-filename'] = info.backingFilename;
  }
  out['dirty-flag'] = info.dirty ?? false;
  return out;
}

async function info(argv: string[]): Promise<number> {
  const p = parseArgs(argv, ['-f']);
  const [path] = p.positional;
  if (!path || p.positional.length !== 1) throw new UsageError('info needs PATH');
  const disk = await openDisk(path, { format: formatFlag(p, '-f'), readOnly: true });
  try {
    const i = await describe(disk, path);
    if (p.flags.has('--json')) console.log(JSON.stringify(qemuInfoJson(i), null, 4));
    else printInfo(i);
  } finally {
    await disk.close();
  }
  return 0;
}

async function check(argv: string[]): Promise<number> {
  const p = parseArgs(argv, ['-f', '-r']);
  const [path] = p.positional;
  if (!path || p.positional.length !== 1) throw new UsageError('check needs PATH');
  const repair = p.flags.get('-r');
  if (repair !== undefined && repair !== 'leaks' && repair !== 'all') throw new UsageError("-r takes 'leaks' or 'all'");
  const format = formatFlag(p, '-f') ?? (await probeFormat(path));
  if (format === 'raw') {
    console.error('This image format does not support checks');
    return 63;
  }
  const disk = await openDisk(path, { format, readOnly: repair === undefined, forRepair: repair !== undefined });
  let report;
  try {
    if (!(disk instanceof Qcow2Image)) throw new StorageError('UNSUPPORTED', 'not a qcow2 image');
    report = await disk.check(repair ?? 'none');
    if (report.repaired) {
      // Report what is left after the repair, as qemu-img does.
      const before = report;
      report = await disk.check('none');
      console.log(
        `The following inconsistencies were found and repaired:\n\n    ${before.leaks} leaked clusters\n    ${before.corruptions} corruptions\n`,
      );
      console.log('Double checking the fixed image now...');
    }
  } finally {
    await disk.close();
  }
  if (p.flags.has('--json')) {
    // qemu-img check --output=json: counts that are zero are left out, as qemu-img does.
    const counts: [string, number][] = [
      ['image-end-offset', report.imageEndOffset],
      ['total-clusters', report.totalClusters],
      ['check-errors', 0],
      ['leaks', report.leaks],
      ['corruptions', report.corruptions],
      ['allocated-clusters', report.allocatedClusters],
      ['fragmented-clusters', report.fragmentedClusters],
      ['compressed-clusters', report.compressedClusters],
    ];
    const shown = counts.filter(([k, v]) => v !== 0 || k === 'check-errors' || k === 'total-clusters');
    console.log(JSON.stringify({ ...Object.fromEntries(shown), filename: path, format }, null, 4));
  } else {
    for (const m of report.messages.slice(0, 1000)) console.log(m);
    if (report.messages.length > 1000) console.log(`... ${report.messages.length - 1000} more`);
    if (report.corruptions === 0 && report.leaks === 0) console.log('No errors were found on the image.');
    if (report.corruptions > 0) {
      console.log(
        `\n${report.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.`,
      );
    }
    if (report.leaks > 0) {
      console.log(
        `\n${report.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.`,
      );
    }
    const pct = (n: number): string => ((100 * n) / Math.max(1, report.totalClusters)).toFixed(2);
    const ofAllocated = (n: number): string => ((100 * n) / Math.max(1, report.allocatedClusters)).toFixed(2);
    console.log(
      `${report.allocatedClusters}/${report.totalClusters} = ${pct(report.allocatedClusters)}% allocated, ` +
        `${ofAllocated(report.fragmentedClusters)}% fragmented, ${ofAllocated(report.compressedClusters)}% compressed clusters`,
    );
    console.log(`Image end offset: ${report.imageEndOffset}`);
  }
  if (report.corruptions > 0) return 2;
  if (report.leaks > 0) return 3;
  return 0;
}

async function convert(argv: string[]): Promise<number> {
  const p = parseArgs(argv, ['-f', '-O', '-o']);
  const [src, dst] = p.positional;
  if (!src || !dst || p.positional.length !== 2) throw new UsageError('convert needs SRC and DST');
  const outFormat = formatFlag(p, '-O') ?? 'raw';
  const input = await openDisk(src, { format: formatFlag(p, '-f'), readOnly: true });
  let created = false;
  try {
    await createDisk(dst, { format: outFormat, size: input.size, ...parseOptions(p.flags.get('-o')) });
    created = true;
    const output = await openDisk(dst, { format: outFormat });
    try {
      await copyAll(input, output, progressReporter(p.flags.has('-p') || process.stdout.isTTY === true));
      await output.flush();
    } finally {
      await output.close();
    }
  } catch (err) {
    // A failed convert leaves no partial output behind (a half-copied image looks like a good one).
    if (created) await rm(dst, { force: true }).catch(() => {});
    throw err;
  } finally {
    await input.close();
  }
  return 0;
}

/** Progress: a rewritten percentage on a terminal, one line per 10% otherwise. */
function progressReporter(enabled: boolean): (done: number, total: number) => void {
  if (!enabled) return () => undefined;
  const tty = process.stdout.isTTY === true;
  let lastShown = -1;
  return (done, total) => {
    const pct = total === 0 ? 100 : (100 * done) / total;
    if (tty) {
      if (Math.floor(pct) !== lastShown) process.stdout.write(`\r    (${pct.toFixed(2)}/100%)`);
      if (done === total) process.stdout.write('\n');
      lastShown = Math.floor(pct);
    } else {
      const step = Math.floor(pct / 10) * 10;
      if (step !== lastShown) console.log(`    (${step.toFixed(2)}/100%)`);
      lastShown = step;
    }
  };
}

const CONVERT_CHUNK = 2 ** 20;

/** Copies every non-zero chunk; zero chunks are skipped so the (fresh, all-zero) output stays sparse. */
async function copyAll(
  input: BlockBackend,
  output: BlockBackend,
  progress: (done: number, total: number) => void,
): Promise<void> {
  const buf = new Uint8Array(CONVERT_CHUNK);
  progress(0, input.size);
  for (let pos = 0; pos < input.size; pos += CONVERT_CHUNK) {
    const n = Math.min(CONVERT_CHUNK, input.size - pos);
    const chunk = buf.subarray(0, n);
    const knownZero = input instanceof Qcow2Image ? await input.isZeroRange(pos, n) : false;
    if (!knownZero) {
      await input.read(pos, chunk);
      if (!isZero(chunk)) await output.write(pos, chunk);
    }
    progress(pos + n, input.size);
  }
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'create':
        return await create(rest);
      case 'info':
        return await info(rest);
      case 'check':
        return await check(rest);
      case 'convert':
        return await convert(rest);
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        console.log(USAGE);
        return sub === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown subcommand '${sub}'`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`typevisor disk: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof StorageError) {
      console.error(`typevisor disk: ${err.message}`);
      return 1;
    }
    throw err;
  }
}
