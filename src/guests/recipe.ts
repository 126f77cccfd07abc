// What a guest recipe is. Each recipe declares everything that determines its output (files under
// guests/, Debian package versions, the recipes it builds on) so the cache key can be computed without
// building, and a build() that writes its outputs into ctx.out.

export const GUEST_NAMES = ['firmware', 'linux', 'busybox', 'initramfs', 'rootfs', 'debian'] as const;
export type GuestName = (typeof GUEST_NAMES)[number];
/** What `typevisor guest build` builds when no name is given: the fast minimal guest and its firmware. */
export const DEFAULT_GUESTS: readonly GuestName[] = ['firmware', 'linux', 'busybox', 'initramfs', 'rootfs'];

export function isGuestName(s: string): s is GuestName {
  return (GUEST_NAMES as readonly string[]).includes(s);
}

export interface StepOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string;
}

export interface BuildContext {
  /** Scratch space, deleted after the build. */
  readonly work: string;
  /** Where outputs go; renamed into the cache as a whole when build() succeeds. */
  readonly out: string;
  /** guests/<name> in the repository (may not exist for recipes without inputs of their own). */
  readonly recipeDir: string;
  /** guests/ in the repository. */
  readonly recipesDir: string;
  /** Parallel jobs for make. */
  readonly jobs: number;
  /** The cache directory of a dependency's outputs. */
  depDir(name: GuestName): string;
  /** Runs one build step (output to the build log; cwd defaults to work). */
  run(cmd: string, args: readonly string[], opts?: StepOptions): Promise<void>;
  /** A note in the build log and progress display. */
  log(line: string): void;
}

export interface Recipe {
  readonly name: GuestName;
  /** Bump when the build logic (not its inputs) changes what is produced, to invalidate old entries. */
  readonly revision: number;
  readonly deps: readonly GuestName[];
  /** apt packages needed to build; installed when missing (as root). */
  readonly packages: readonly string[];
  /** Installed packages whose versions are part of the cache key (sources, toolchain). */
  readonly keyPackages: readonly string[];
  /** Source packages (apt-get source) whose versions are part of the cache key. */
  readonly keySources?: readonly string[];
  /** Folders under guests/ whose files are part of the cache key. */
  readonly inputs: readonly string[];
  /** Files build() must leave in ctx.out. */
  readonly outputs: readonly string[];
  /** Runs before the key is computed, e.g. to make a source package known to apt. */
  prepare?(log: (line: string) => void): void;
  build(ctx: BuildContext): Promise<void>;
}
