/**
 * Where a process opens a file it may no longer reach by its name. A VM process that dropped its privileges
 * (src/vm/drop-privileges.ts) cannot pass a 0700 directory above its VM's folder (/root) or above a shared base
 * image (the guest cache), but it kept a descriptor of its folder and of each base image: /proc/self/fd/N (and
 * /proc/self/fd/<folder>/<relative path>) reaches them without walking those directories, and the kernel still
 * checks the file's own permissions. Without aliases every path is used as it is.
 */
export interface PathAlias {
  /** The canonical path (what realpath would say): names the file in backing chains and errors. */
  real: string;
  /** The path to hand to open(2), rename(2) and the like. */
  open: string;
}

export type PathAliases = (path: string) => PathAlias | undefined;

let aliases: PathAliases | undefined;

export function setPathAliases(fn: PathAliases | undefined): void {
  aliases = fn;
}

export function pathAlias(path: string): PathAlias | undefined {
  return aliases?.(path);
}

/** The path to open for `path`. */
export function openablePath(path: string): string {
  return aliases?.(path)?.open ?? path;
}

/** Descriptors opened for one later open each (a state file to restore from); the taker owns (closes) it. */
let descriptors: ((path: string) => number | undefined) | undefined;

export function setHeldDescriptors(fn: ((path: string) => number | undefined) | undefined): void {
  descriptors = fn;
}

/** A descriptor opened earlier for `path` (read-only), handed over once, or undefined. */
export function takeHeldDescriptor(path: string): number | undefined {
  return descriptors?.(path);
}
