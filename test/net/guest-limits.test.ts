// @exclusive: measures guest throughput against a bandwidth limit; another test file running beside it would skew it
/**
 * The networking issue's bandwidth evidence with real Linux guests, through the real daemon and CLI. Two VMs on
 * the default NAT network stream `nc < /dev/zero` to TCP sinks on the host's loopback; the host timestamps every
 * byte it receives, and reads the limited NIC's frame counter through the API at the window edges:
 * - `lim` is created with `--nic network=default,rate=2M,burst=64K`: over 10 s of steady state its NIC sends
 *   2 MiB/s ± 10 % of frames, and the host receives 2 MiB/s ± 10 % of payload;
 * - `free` (no limit) streams beside it the while. Its rate with `lim` sending at 2 MiB/s is compared with its rate
 *   with `lim` held to 16 KiB/s, in interleaved 4 s segments (lim toggled through PATCH /vms/lim), so a machine
 *   whose load drifts affects both sides alike: it keeps NEIGHBOUR_KEEPS of its rate;
 * - `typevisor set lim --nic-rate 4M,burst=64K` raises it live (free has stopped by then): the first second after
 *   the CLI returns already runs above the midpoint (3 MiB/s), and the 6 s after that at 4 MiB/s ± 10 % (frames
 *   and payload);
 * - finally `--nic-rate none` lifts the limit, and `lim` must then exceed 4 MiB/s by a clear margin: proof that
 *   4 MiB/s was the limiter's doing and not the guest's ceiling. When the guest cannot go that fast on this
 *   machine, the test fails saying so instead of passing on numbers that prove nothing.
 * The burst (64 KiB, 1/32 s at 2 MiB/s) is small and the windows start after a warm-up, so no burst inflates them.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { removeHome } from '../host/daemon-harness.js';
import { ByteSink, fmtRates, GuestDaemon, MiB, sleep } from './daemon-guests.js';

/** The limits the issue names, MiB/s: created at LOW, raised live to HIGH. */
const LOW = 2;
const HIGH = 4;
/** Token bucket size: 1/32 s at LOW, so a burst cannot inflate a 10 s window by more than 0.3 %. */
const BURST = '64K';
const BURST_BYTES = 64 * 1024;
/** Seconds a stream runs before its windows count: TCP's slow start and the token bucket's initial burst. */
const WARM_MS = 3000;
/** How far a limited rate may stray from its target (the issue's ± 10 %). */
const RATE_TOLERANCE = 0.1;
/**
 * `free` beside `lim` at 2 MiB/s keeps at least this share of its rate beside `lim` held to 16 KiB/s; a limiter
 * that throttled the wrong NIC would cut `free` to 2 MiB/s or less. The guests run on the interpreter (about 16
 * MiB/s, guest-bound; it kept 96 %): on the WebAssembly JIT `free` streams 35-65 MiB/s and the shared host path
 * shows, free moving 48-82 % of its quiet-segment rate beside `lim` at unchanged CPU (docs/performance.md,
 * "Network"; not solved yet).
 */
const NEIGHBOUR_KEEPS = 0.75;
/** `lim`'s transmit limit while it is "quiet" in the neighbour comparison, bytes/s. */
const QUIET = 16 * 1024;
/** Neighbour segments: this many (quiet, limited) pairs of SEGMENT_MS each; the first second of each is skipped. */
const SEGMENT_PAIRS = 4;
const SEGMENT_MS = 4000;
/** `lim` unlimited must reach 4 MiB/s × this for the 4 MiB/s phase to mean anything. */
const HEADROOM = 1.15;

let g: GuestDaemon;

/** A VM's first NIC's transmitted frame bytes (the device's counter, read through the API) and when. */
async function nicMark(vm: string): Promise<{ t: number; txBytes: number }> {
  const view = await g.vm(vm);
  return { t: performance.now(), txBytes: view.stats!.nics[0]!.txBytes };
}
const frameRate = (a: { t: number; txBytes: number }, b: { t: number; txBytes: number }) =>
  (b.txBytes - a.txBytes) / MiB / ((b.t - a.t) / 1000);
const sinks: ByteSink[] = [];

before(async () => {
  g = await GuestDaemon.start({ engine: 'interpreter' });
});
after(async () => {
  for (const s of sinks) await s.close();
  await g.d.stop();
  removeHome(g.d.home);
});

test(
  'a 2 MiB/s NIC moves 2 MiB/s, a live change to 4 MiB/s holds within a second, an unlimited neighbour keeps its speed',
  { timeout: 1_200_000 },
  async (t) => {
    const limSink = await ByteSink.listen();
    const freeSink = await ByteSink.listen();
    sinks.push(limSink, freeSink);
    await Promise.all([
      g.create('lim', '--memory', '128', '--nic', `network=default,rate=${LOW}M,burst=${BURST}`),
      g.create('free', '--memory', '128'),
    ]);
    await Promise.all([g.bootWithAddress('lim'), g.bootWithAddress('free')]);
    const info = await g.cli('info', 'lim');
    t.diagnostic(
      info.stdout
        .split('\n')
        .filter((l) => /nic|rate/i.test(l))
        .join(' | '),
    );

    // 1. Both stream: lim at LOW, free unlimited; 10 s of steady state.
    await g.streamToHost('free', freeSink.port);
    await g.streamToHost('lim', limSink.port);
    await Promise.all([freeSink.flowing('free'), limSink.flowing('lim')]);
    await sleep(WARM_MS);
    const low0 = await nicMark('lim');
    await sleep(10_000);
    const low1 = await nicMark('lim');
    const limLow = limSink.rate(low0.t, low1.t);
    const limLowFrames = frameRate(low0, low1);

    // 2. The neighbour: free's rate beside lim at LOW against beside lim held quiet, interleaved.
    const txLimit = (bytesPerSecond: number) =>
      g.d.client.json('PATCH', '/vms/lim', { nicRates: [{ nic: 0, tx: { bytesPerSecond, burstBytes: BURST_BYTES } }] });
    const segments = { quiet: { free: 0, lim: 0, ms: 0 }, limited: { free: 0, lim: 0, ms: 0 } };
    const perSegment: string[] = [];
    for (let i = 0; i < SEGMENT_PAIRS * 2; i++) {
      const kind = i % 2 === 0 ? 'quiet' : 'limited';
      await txLimit(kind === 'quiet' ? QUIET : LOW * MiB);
      const from = performance.now() + 1000;
      await sleep(SEGMENT_MS);
      const to = performance.now();
      const seg = segments[kind];
      seg.free += freeSink.bytesAt(to) - freeSink.bytesAt(from);
      seg.lim += limSink.bytesAt(to) - limSink.bytesAt(from);
      seg.ms += to - from;
      perSegment.push(`${kind} ${freeSink.rate(from, to).toFixed(2)}/${limSink.rate(from, to).toFixed(2)}`);
    }
    const mibps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);
    const freeQuiet = mibps(segments.quiet.free, segments.quiet.ms);
    const freeBeside = mibps(segments.limited.free, segments.limited.ms);
    const limBeside = mibps(segments.limited.lim, segments.limited.ms);
    // free stops, so the raised limit below is not shared with it (a guest reaches only so much through the NAT).
    freeSink.dropAll();
    await sleep(2000);

    // 3. The live change, through the real CLI.
    const setStart = performance.now();
    const set = await g.cli('set', 'lim', '--nic-rate', `${HIGH}M,burst=${BURST}`);
    const setDone = performance.now();
    assert.equal(set.status, 0, `set --nic-rate: ${set.stderr}`);
    await sleep(Math.max(0, setDone + 1000 - performance.now()));
    const high0 = await nicMark('lim');
    await sleep(6000);
    const high1 = await nicMark('lim');
    const firstSecond = limSink.rate(setDone, setDone + 1000);
    const limHigh = limSink.rate(high0.t, high1.t);
    const limHighFrames = frameRate(high0, high1);

    // 4. lim without a limit: what this guest can do here and now.
    assert.equal((await g.cli('set', 'lim', '--nic-rate', 'none')).status, 0);
    await sleep(WARM_MS);
    const openFrom = performance.now();
    await sleep(6000);
    const limOpen = limSink.rate(openFrom, performance.now());
    limSink.dropAll();

    t.diagnostic(
      `lim at ${LOW} MiB/s: ${limLowFrames.toFixed(3)} MiB/s of frames at the NIC, ${limLow.toFixed(3)} MiB/s of payload at the host ` +
        `over ${((low1.t - low0.t) / 1000).toFixed(1)} s; 1 s windows ${fmtRates(limSink.windows(low0.t, low1.t))}; ` +
        `free beside it ${freeSink.rate(low0.t, low1.t).toFixed(2)} MiB/s`,
    );
    t.diagnostic(
      `free beside lim at ${LOW} MiB/s: ${freeBeside.toFixed(2)} MiB/s (lim ${limBeside.toFixed(2)}); beside lim held to ` +
        `${QUIET / 1024} KiB/s: ${freeQuiet.toFixed(2)} MiB/s (${((freeBeside / freeQuiet) * 100).toFixed(0)} %); ` +
        `segments free/lim MiB/s: ${perSegment.join(', ')}`,
    );
    t.diagnostic(
      `set --nic-rate ${HIGH}M: the CLI ran ${(setDone - setStart).toFixed(0)} ms; 250 ms windows from 1 s before it returned: ` +
        `${fmtRates(limSink.windows(setDone - 1000, setDone + 2000, 250))}; the first second after: ${firstSecond.toFixed(2)} MiB/s`,
    );
    t.diagnostic(
      `lim at ${HIGH} MiB/s: ${limHighFrames.toFixed(3)} MiB/s of frames at the NIC, ${limHigh.toFixed(3)} MiB/s of payload at the host ` +
        `over ${((high1.t - high0.t) / 1000).toFixed(1)} s; 1 s windows ${fmtRates(limSink.windows(high0.t, high1.t))}`,
    );
    t.diagnostic(`lim unlimited: ${limOpen.toFixed(2)} MiB/s`);

    const floor = HIGH * HEADROOM;
    assert.ok(
      limOpen >= floor,
      `the guest streams only ${limOpen.toFixed(2)} MiB/s without a limit on this machine now; at least ` +
        `${floor.toFixed(1)} MiB/s is needed to tell a ${HIGH} MiB/s limit from the guest's own ceiling (is the machine loaded?)`,
    );
    // The limit counts Ethernet frames; the payload the host receives is ~95 % of them (TCP/IP headers).
    for (const [what, rate, target] of [
      ['frames at the NIC', limLowFrames, LOW],
      ['payload at the host', limLow, LOW],
      ['frames at the NIC', limHighFrames, HIGH],
      ['payload at the host', limHigh, HIGH],
    ] as const)
      assert.ok(
        Math.abs(rate - target) <= target * RATE_TOLERANCE,
        `lim limited to ${target} MiB/s moved ${rate.toFixed(3)} MiB/s (${what})`,
      );
    // Within a second: the new limit governed most of the first second after the CLI returned.
    assert.ok(
      firstSecond > (LOW + HIGH) / 2,
      `the first second after the change to ${HIGH} MiB/s moved ${firstSecond.toFixed(2)} MiB/s`,
    );
    assert.ok(
      freeBeside >= freeQuiet * NEIGHBOUR_KEEPS,
      `free streamed ${freeBeside.toFixed(2)} MiB/s beside lim at ${LOW} MiB/s, under ${NEIGHBOUR_KEEPS} × its ` +
        `${freeQuiet.toFixed(2)} MiB/s beside lim held quiet`,
    );
    assert.ok(
      Math.abs(limBeside - LOW) <= LOW * RATE_TOLERANCE * 2,
      `lim moved ${limBeside.toFixed(2)} MiB/s in the limited segments`,
    );
    for (const vm of ['lim', 'free']) await g.cli('rm', '--force', vm);
  },
);
