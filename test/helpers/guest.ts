/**
 * The guest images built by `typevisor guest build`, for the tests that boot Linux. A missing image fails the
 * test that needs it (CI builds them first: `npm test` runs `typevisor guest build`), it never skips.
 */
import assert from 'node:assert/strict';
import { guestArtifacts, type GuestArtifacts } from '../../src/guests/index.js';

/** The built guest images; fails the calling test, naming the command that builds them, when they are missing. */
export function requireGuest(): GuestArtifacts {
  try {
    return guestArtifacts();
  } catch (err) {
    assert.fail(`guest images are required: ${(err as Error).message}`);
  }
}
