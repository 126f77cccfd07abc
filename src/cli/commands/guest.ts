// `typevisor guest build [name...]`, `typevisor guest path`: the guest images built from Debian sources.
import { parseArgs } from 'node:util';
import { buildGuests, GUEST_NAMES, guestArtifacts, guestsCacheDir, isGuestName, type GuestName } from '../../guests/index.js';

export const summary = 'build the guest images (Linux, busybox initramfs/rootfs, firmware) or show where they are';

const USAGE = `usage: typevisor guest build [--force] [${GUEST_NAMES.join('|')}]...
       typevisor guest path [--json]

  build   builds the named guests (default: all) and what they depend on, reusing cached builds whose
          inputs are unchanged. Cache: ${'$'}TYPEVISOR_CACHE or ${'$'}XDG_CACHE_HOME/typevisor (now ${guestsCacheDir()}).
          --force rebuilds the named guests even when cached.
  path    prints the paths of the built artifacts (fails if they are not built).`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(USAGE);
    return sub ? 0 : 2;
  }
  if (sub === 'build') return build(rest);
  if (sub === 'path' || sub === 'paths') return path(rest);
  console.error(`typevisor guest: unknown subcommand '${sub}'\n${USAGE}`);
  return 2;
}

async function build(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const bad = positionals.filter((p) => !isGuestName(p));
  if (bad.length) {
    console.error(`typevisor guest build: unknown guest ${bad.join(', ')} (known: ${GUEST_NAMES.join(', ')})`);
    return 2;
  }
  const started = Date.now();
  try {
    const results = await buildGuests(positionals as GuestName[], { force: values.force === true });
    const built = results.filter((r) => !r.cached).length;
    console.log(
      `guest build: ${results.length} guest(s), ${built} built, ${results.length - built} cached, ` +
        `${((Date.now() - started) / 1000).toFixed(1)}s`,
    );
    return 0;
  } catch (err) {
    console.error(`typevisor guest build: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

function path(argv: string[]): number {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' } } });
  try {
    const a = guestArtifacts();
    if (values.json) console.log(JSON.stringify(a, null, 2));
    else for (const [k, v] of Object.entries(a)) console.log(`${k.padEnd(14)} ${v}`);
    return 0;
  } catch (err) {
    console.error(`typevisor guest path: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
