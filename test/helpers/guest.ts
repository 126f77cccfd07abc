/**
 * The guest images built by `typevisor guest build`, for the tests that boot Linux. `builtGuest` is undefined,
 * and `skipWithoutGuest` says why, when they are not built, so those tests skip instead of failing.
 */
import { existsSync } from 'node:fs';
import type { GuestArtifacts } from '../../src/guests/index.js';

async function load(): Promise<GuestArtifacts | undefined> {
  try {
    const mod = (await import('../../src/guests/index' + '.js')) as { guestArtifacts: () => GuestArtifacts };
    const a = mod.guestArtifacts();
    return existsSync(a.kernel) && existsSync(a.initramfs) ? a : undefined;
  } catch {
    return undefined;
  }
}

export const builtGuest = await load();
export const skipWithoutGuest: string | false = builtGuest ? false : 'guest images not built (typevisor guest build)';
