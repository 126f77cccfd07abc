/**
 * Guest RAM chunks given back by the balloon or free page reporting become garbage ArrayBuffers; V8 frees their
 * memory only when it collects them, and an idle worker allocates too little to collect for a long time, so the
 * host's RSS would not drop. This watches the VM's allocated RAM and, when it fell by at least a threshold since
 * the last collection, runs a full collection in this worker (its own isolate only).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** A drop smaller than this is not worth a full collection. */
export const RELEASE_GC_THRESHOLD_BYTES = 16 * 1024 * 1024;

let collect: (() => void) | null | undefined;

/** The isolate's gc(), exposed once through V8 flags (null where that is refused). */
function gcFunction(): (() => void) | null {
  if (collect !== undefined) return collect;
  try {
    setFlagsFromString('--expose-gc');
    const fn: unknown = runInNewContext('gc');
    collect = typeof fn === 'function' ? (fn as () => void) : null;
  } catch {
    collect = null;
  }
  return collect;
}

/** Polls `allocatedBytes` every `periodMs`; returns a function that stops it. */
export function collectAfterRelease(allocatedBytes: () => number, periodMs = 500): () => void {
  let high = allocatedBytes();
  const timer = setInterval(() => {
    const now = allocatedBytes();
    if (now > high) high = now;
    else if (high - now >= RELEASE_GC_THRESHOLD_BYTES) {
      gcFunction()?.();
      high = now;
    }
  }, periodMs);
  timer.unref?.();
  return () => clearInterval(timer);
}
