import type { HostInfo, VmView } from '../../host/actions.js';
import type { HostSample } from '../../host/monitor/samples.js';
import { ratesBetween, renderTop, SORT_KEYS, SORT_NAMES, type Rates, type SortKey } from '../top-view.js';
import { defineVerb, UsageError } from '../verb.js';

export const summary = 'live full-screen table of VMs: CPU %, steal, weight/cap, memory, disk and net rates';

export const run = defineVerb({
  name: 'top',
  usage: `top [--sort ${SORT_NAMES.join('|')}] [--delay SECONDS] [--iterations N]

A screen refreshed every --delay seconds (default 1). Keys: ${Object.entries(SORT_KEYS)
    .map(([k, v]) => `${k} sorts by ${v}`)
    .join(', ')}; q or Ctrl-C quits. Without a terminal (or with --iterations) it prints N screens and exits.`,
  options: { sort: { type: 'string' }, delay: { type: 'string' }, iterations: { type: 'string' } },
  maxArgs: 0,
  async run({ values, client }) {
    let sort = (values.sort ?? 'cpu') as SortKey;
    if (!SORT_NAMES.includes(sort)) throw new UsageError(`--sort takes one of ${SORT_NAMES.join(', ')}`);
    const delay = values.delay === undefined ? 1 : Number(values.delay);
    if (!Number.isFinite(delay) || delay < 0.2) throw new UsageError('--delay takes seconds (at least 0.2)');
    const tty = !!process.stdout.isTTY && !!process.stdin.isTTY;
    const iterations = values.iterations === undefined ? (tty ? Infinity : 1) : Number(values.iterations);
    if (!Number.isInteger(iterations) && iterations !== Infinity) throw new UsageError('--iterations takes a whole number');

    let prev = new Map<string, VmView>();
    let prevAt = 0;
    let stop = false;
    let wake: (() => void) | undefined;
    const redraw = () => wake?.();
    if (tty) {
      process.stdout.write('\x1b[?1049h\x1b[?25l'); // alternate screen, hidden cursor
      process.stdin.setRawMode(true);
      process.stdin.resume();
      process.stdin.on('data', (b: Buffer) => {
        const k = b.toString();
        if (k === 'q' || k === '\x03') stop = true;
        else if (k in SORT_KEYS) sort = SORT_KEYS[k as keyof typeof SORT_KEYS];
        redraw();
      });
    }
    const restore = () => {
      if (!tty) return;
      process.stdin.setRawMode(false);
      process.stdin.pause();
      process.stdout.write('\x1b[?25h\x1b[?1049l');
    };
    process.once('SIGINT', () => {
      stop = true;
      redraw();
    });
    try {
      for (let i = 0; i < iterations && !stop; i++) {
        const [host, list, hostHist] = await Promise.all([
          client.json<HostInfo>('GET', '/host'),
          client.json<{ vms: VmView[] }>('GET', '/vms?stats=true'),
          client.json<{ samples: HostSample[] }>('GET', '/host/stats?history=1'),
        ]);
        const now = performance.now();
        const rates = new Map<string, Rates>();
        for (const v of list.vms) rates.set(v.name, ratesBetween(prev.get(v.name), v, (now - prevAt) / 1000));
        prev = new Map(list.vms.map((v) => [v.name, v]));
        prevAt = now;
        const screen = renderTop(host, hostHist.samples[0], list.vms, rates, sort, new Date(), process.stdout.columns ?? 160);
        process.stdout.write(tty ? `\x1b[H\x1b[2J${screen}\n` : `${screen}\n\n`);
        if (i + 1 < iterations && !stop)
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, delay * 1000);
          });
      }
    } finally {
      restore();
    }
    return 0;
  },
});
