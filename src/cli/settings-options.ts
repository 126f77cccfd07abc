/**
 * The settings a user can change on a VM, as one table: each entry is a command-line option, its help, and how
 * its value goes into the PATCH /vms/:name body. `typevisor set` takes them all; `typevisor create` takes the
 * ones marked `atCreate`. A new setting (e.g. a NIC rate) is one more entry.
 */
import { parseNicRate } from './net-options.js';
import { UsageError } from './verb.js';
import { parseSizeMiB, SizeError } from '../host/memory/settings.js';

export type PatchBody = Record<string, unknown> & { cpu?: Record<string, unknown> };

export interface SettingOption {
  flag: string;
  /** Shown in usage: `--flag VALUE`. */
  value: string;
  help: string;
  /** Also accepted by `typevisor create`. */
  atCreate: boolean;
  apply(body: PatchBody, raw: string): void;
}

const cpu = (body: PatchBody): Record<string, unknown> => (body.cpu ??= {});
const memory = (body: PatchBody): Record<string, unknown> =>
  ((body.memory as Record<string, unknown> | undefined) ??= {}) as Record<string, unknown>;

/** A size option ("512M", "1G") in MiB, or a usage error naming the option. */
export function sizeOption(flag: string, raw: string): number {
  try {
    return parseSizeMiB(raw, flag);
  } catch (err) {
    if (err instanceof SizeError) throw new UsageError(err.message);
    throw err;
  }
}
const none = (raw: string): boolean => raw === 'none' || raw === 'off';

function number(flag: string, raw: string, integer: boolean): number {
  const ok = integer ? /^-?\d+$/.test(raw) : /^-?\d+(\.\d+)?$/.test(raw);
  if (!ok) throw new UsageError(`${flag} takes ${integer ? 'a whole number' : 'a number'}, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

export const SETTING_OPTIONS: SettingOption[] = [
  {
    flag: 'cpu-weight',
    value: 'N',
    help: 'share of the host CPU under contention, 1-10000 (default 100)',
    atCreate: true,
    apply: (b, raw) => void (cpu(b).weight = number('--cpu-weight', raw, true)),
  },
  {
    flag: 'cpu-cap',
    value: 'PCT|none',
    help: 'at most PCT percent of one host core (150 = 1.5 cores), even on an idle host',
    atCreate: true,
    apply: (b, raw) => void (cpu(b).capPercent = none(raw) ? null : number('--cpu-cap', raw, false)),
  },
  {
    flag: 'cpuset',
    value: 'LIST|none',
    help: 'host cores the VM may run on, e.g. 0 or 0-1 or 0,2',
    atCreate: true,
    apply: (b, raw) => void (cpu(b).cpuset = none(raw) ? null : raw),
  },
  {
    flag: 'cpu-burst',
    value: 'PCT[:SECONDS]|none',
    help: 'while the host is idle, raise a VM at its cap to PCT for at most SECONDS (default 30)',
    atCreate: true,
    apply: (b, raw) => {
      if (none(raw)) return void (cpu(b).burst = null);
      const m = /^(\d+(?:\.\d+)?)(?::(\d+(?:\.\d+)?))?$/.exec(raw);
      if (!m) throw new UsageError(`--cpu-burst takes PCT[:SECONDS] (e.g. 80:30) or none, got ${JSON.stringify(raw)}`);
      cpu(b).burst = { capPercent: Number(m[1]), seconds: m[2] === undefined ? 30 : Number(m[2]) };
    },
  },
  {
    flag: 'nic-rate',
    value: '[NIC:]RATE[,burst=SIZE]|[NIC:]rx=RATE,tx=RATE|[NIC:]none',
    help: "a NIC's bandwidth limit (RATE: 512K, 2M, 1G bytes/s or 100mbit; NIC index, default 0)",
    atCreate: false,
    apply: (b, raw) => void ((b.nicRates ??= []) as unknown[]).push(parseNicRate(raw)),
  },
  {
    flag: 'memory-min',
    value: 'SIZE|none',
    help: 'the floor the balloon never takes the guest under (default: the maximum, no ballooning)',
    atCreate: true,
    apply: (b, raw) => void (memory(b).minMiB = none(raw) ? null : sizeOption('--memory-min', raw)),
  },
  {
    flag: 'memory-weight',
    value: 'N',
    help: 'share of host memory under pressure, 1-10000 (default 100)',
    atCreate: true,
    apply: (b, raw) => void (memory(b).weight = number('--memory-weight', raw, true)),
  },
  {
    flag: 'memory-target',
    value: 'SIZE|auto',
    help: "running VM: pin the guest's size within [min, max] (the balloon takes the rest); auto: the policy",
    atCreate: false,
    apply: (b, raw) => void (memory(b).targetMiB = raw === 'auto' || none(raw) ? null : sizeOption('--memory-target', raw)),
  },
  {
    flag: 'vcpus',
    value: 'N',
    help: 'vCPUs (a stopped VM: its size; a running VM: harts online, up to its size)',
    atCreate: false,
    apply: (b, raw) => void (b.vcpus = number('--vcpus', raw, true)),
  },
  {
    flag: 'autostart',
    value: 'yes|no',
    help: 'start the VM when the daemon starts',
    atCreate: false,
    apply: (b, raw) => {
      if (raw !== 'yes' && raw !== 'no') throw new UsageError(`--autostart takes yes or no, got ${JSON.stringify(raw)}`);
      b.autostart = raw === 'yes';
    },
  },
];

/** parseArgs option specs for the table (every option takes a string). */
export function settingParseOptions(atCreate: boolean): Record<string, { type: 'string' }> {
  return Object.fromEntries(
    SETTING_OPTIONS.filter((o) => !atCreate || o.atCreate).map((o) => [o.flag, { type: 'string' as const }]),
  );
}

export function settingsUsage(atCreate: boolean): string {
  const opts = SETTING_OPTIONS.filter((o) => !atCreate || o.atCreate);
  const w = Math.max(...opts.map((o) => o.flag.length + o.value.length + 3));
  return opts.map((o) => `  ${`--${o.flag} ${o.value}`.padEnd(w)}  ${o.help}`).join('\n');
}

/** Builds the PATCH body from parsed values; options not given are left out. */
export function settingsBody(values: Record<string, unknown>, atCreate: boolean): PatchBody {
  const body: PatchBody = {};
  for (const o of SETTING_OPTIONS) {
    if (atCreate && !o.atCreate) continue;
    const raw = values[o.flag];
    if (typeof raw === 'string') o.apply(body, raw);
  }
  return body;
}
