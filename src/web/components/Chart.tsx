// A time-series chart (uPlot on a canvas). Colours come from the theme's CSS variables and are re-read when the
// theme changes. The last value of each line is also in data-latest, so tests (and screen readers, through the
// legend) can read what the chart shows.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { cssVar, onThemeChange } from '../theme.js';

export interface Line {
  label: string;
  values: number[];
  /** A CSS variable holding the colour, e.g. --chart-1. */
  color: string;
}

interface Props {
  title: string;
  t: number[];
  lines: Line[];
  format: (v: number) => string;
  /** Fixed y range (e.g. 0..100 for percent); otherwise from the data, starting at 0. */
  yMax?: number;
  /** Byte quantities: y ticks at powers of two (1 MiB, 512 KiB...), not 977 KiB. */
  binary?: boolean;
  /** Values in MiB: the same power-of-two steps. */
  mebibytes?: boolean;
  id?: string;
}

const BINARY_INCREMENTS = [0, 10, 20, 30, 40]
  .flatMap((shift) => [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].map((m) => m * 2 ** shift))
  .sort((a, b) => a - b);
/** The same steps for values already in MiB. */
const MIB_INCREMENTS = [0.25, 0.5, ...BINARY_INCREMENTS.filter((v) => v <= 2 ** 20)];

function options(p: Props, width: number): uPlot.Options {
  const fg = cssVar('--fg-muted');
  const grid = cssVar('--border');
  return {
    width,
    height: 160,
    legend: { show: true, live: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, p.yMax ?? Math.max(1, max * 1.1)] } },
    axes: [
      { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
      {
        stroke: fg,
        grid: { stroke: grid, width: 1 },
        ticks: { stroke: grid },
        size: 70,
        values: (_u, vals) => vals.map(p.format),
        ...(p.binary ? { incrs: BINARY_INCREMENTS } : p.mebibytes ? { incrs: MIB_INCREMENTS } : {}),
      },
    ],
    series: [
      {},
      ...p.lines.map((l) => ({
        label: l.label,
        stroke: cssVar(l.color),
        width: 2,
        points: { show: false },
        value: (_u: uPlot, v: number | null) => (v === null ? '–' : p.format(v)),
      })),
    ],
  };
}

export function Chart(p: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const props = useRef(p);
  props.current = p;

  useEffect(() => {
    const el = box.current!;
    const make = (): void => {
      plot.current?.destroy();
      const cur = props.current;
      plot.current = new uPlot(options(cur, el.clientWidth || 300), [cur.t, ...cur.lines.map((l) => l.values)], el);
    };
    make();
    const ro = new ResizeObserver(() => plot.current?.setSize({ width: el.clientWidth || 300, height: 160 }));
    ro.observe(el);
    const off = onThemeChange(make);
    return () => {
      ro.disconnect();
      off();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [p.lines.length]);

  useEffect(() => {
    // The rings are trimmed in place: hand uPlot copies so its view matches this render.
    plot.current?.setData([p.t.slice(), ...p.lines.map((l) => l.values.slice())]);
  });

  const latest = p.lines.map((l) => l.values.at(-1) ?? 0);
  return (
    <figure class="chart" id={p.id} data-latest={latest.map((v) => v.toFixed(2)).join(' ')} data-points={p.t.length}>
      <figcaption>
        {p.title}
        <span class="chart-now">{p.lines.map((l, i) => `${l.label} ${p.format(latest[i]!)}`).join(' · ')}</span>
      </figcaption>
      <div ref={box} class="chart-canvas" role="img" aria-label={`${p.title} chart`} />
    </figure>
  );
}
