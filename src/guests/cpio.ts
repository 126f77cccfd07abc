// A writer for the "newc" cpio format the Linux initramfs unpacker reads (see the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst). Writing it here rather than calling
// cpio(1) lets the archive hold /dev/console without root (mknod) and makes it byte-reproducible.
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

export const S_IFDIR = 0o040000; // directory
export const S_IFREG = 0o100000; // regular file
export const S_IFLNK = 0o120000; // symbolic link
export const S_IFCHR = 0o020000; // character device

export interface CpioEntry {
  /** Path inside the archive, without a leading slash, e.g. 'bin/busybox'. */
  path: string;
  /** File type and permission bits, e.g. S_IFREG | 0o755. */
  mode: number;
  data?: Uint8Array;
  /** For device nodes: major and minor numbers. */
  rdev?: { major: number; minor: number };
}

const TRAILER = 'TRAILER!!!';

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** Serialises entries (in order) plus the trailer. Owners are root, timestamps 0, inode numbers 1, 2, ... */
export function writeNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const all = [...entries, { path: TRAILER, mode: 0 }];
  all.forEach((e, i) => {
    const name = Buffer.from(e.path + '\0', 'utf8');
    const data = e.data ?? new Uint8Array(0);
    const fields = [
      i + 1, // c_ino
      e.mode, // c_mode
      0, // c_uid
      0, // c_gid
      (e.mode & S_IFDIR) === S_IFDIR && e.path !== TRAILER ? 2 : 1, // c_nlink
      0, // c_mtime
      data.length, // c_filesize
      0, // c_devmajor
      0, // c_devminor
      e.rdev?.major ?? 0, // c_rdevmajor
      e.rdev?.minor ?? 0, // c_rdevminor
      name.length, // c_namesize (including the NUL)
      0, // c_check
    ];
    const header = Buffer.from('070701' + fields.map(hex8).join(''), 'ascii');
    parts.push(header, name, Buffer.alloc(pad4(header.length + name.length)));
    parts.push(Buffer.from(data), Buffer.alloc(pad4(data.length)));
  });
  return Buffer.concat(parts);
}

/** Entries for every directory, file and symlink under root (sorted, parents before children). */
export function entriesFromDir(root: string, prefix = ''): CpioEntry[] {
  const out: CpioEntry[] = [];
  for (const name of readdirSync(root).sort()) {
    const full = join(root, name);
    const path = prefix + name;
    const st = lstatSync(full);
    const perm = st.mode & 0o7777;
    if (st.isDirectory()) {
      out.push({ path, mode: S_IFDIR | perm });
      out.push(...entriesFromDir(full, path + '/'));
    } else if (st.isSymbolicLink()) {
      out.push({ path, mode: S_IFLNK | 0o777, data: Buffer.from(readlinkSync(full), 'utf8') });
    } else if (st.isFile()) {
      out.push({ path, mode: S_IFREG | perm, data: readFileSync(full) });
    }
  }
  return out;
}
