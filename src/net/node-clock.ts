/** NetClock over performance.now and Node timers (unref'd: a network's housekeeping never keeps a process alive). */
import { performance } from 'node:perf_hooks';
import type { NetClock } from './host-io.js';

export const nodeClock: NetClock = {
  now: () => performance.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimer(handle) {
    if (handle !== undefined) clearTimeout(handle as NodeJS.Timeout);
  },
};
