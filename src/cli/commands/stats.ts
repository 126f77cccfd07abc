import type { VmView } from '../../host/actions.js';
import { bytes, si, table } from '../format.js';
import { defineVerb, printJson, UsageError } from '../verb.js';
import { ClientError, EXIT } from '../client.js';

export const summary = 'live table of per-VM CPU, instructions/s, memory, disk and net (--once for one sample)';

function render(vms: VmView[]): string {
  return table(
    ['NAME', 'STATE', 'CPU%', 'INSTR/S', 'RESIDENT', 'MEMORY', 'BALLOON', 'AVAIL', 'MAJFLT', 'DISK R/W', 'NET RX/TX', 'UPTIME'],
    vms.map((v) => {
      const s = v.stats;
      if (!s) return [v.name, v.state, '-', '-', '-', `${v.config.memoryMiB} MiB`, '-', '-', '-', '-', '-', '-'];
      return [
        v.name,
        v.state,
        s.cpuPercent.toFixed(1),
        si(s.instructionsPerSecond),
        bytes(s.residentBytes),
        bytes(s.memoryBytes),
        bytes(s.balloonBytes),
        s.guestAvailableBytes === null ? '-' : bytes(s.guestAvailableBytes),
        s.guestMajorFaults === null ? '-' : String(s.guestMajorFaults),
        `${bytes(s.diskReadBytes)}/${bytes(s.diskWriteBytes)}`,
        `${bytes(s.netRxBytes)}/${bytes(s.netTxBytes)}`,
        `${Math.round(s.uptimeSeconds)}s`,
      ];
    }),
  );
}

export const run = defineVerb({
  name: 'stats',
  usage: 'stats [NAME...] [--once] [--interval SECONDS] [--json]\n\nRefreshes until Ctrl-C; --json implies --once.',
  options: { once: { type: 'boolean' }, interval: { type: 'string' } },
  async run({ values, positionals, client }) {
    const interval = values.interval === undefined ? 2 : Number(values.interval);
    if (!Number.isFinite(interval) || interval < 0.2) throw new UsageError('--interval takes seconds (at least 0.2)');
    const sample = async () => {
      const { vms } = await client.json<{ vms: VmView[] }>('GET', '/vms?stats=true');
      return positionals.length ? vms.filter((v) => positionals.includes(v.name)) : vms;
    };
    // CPU % and instructions/s are rates: the daemon needs two samples, so take a short first one.
    const first = await client.json<{ vms: VmView[] }>('GET', '/vms?stats=true');
    const unknown = positionals.filter((n) => !first.vms.some((v) => v.name === n));
    if (unknown.length)
      throw new ClientError(EXIT.NOT_FOUND, `no VM named ${unknown.map((n) => `'${n}'`).join(', ')}`, 'VM_NOT_FOUND');
    await new Promise((r) => setTimeout(r, 300));
    if (values.json || values.once) {
      const vms = await sample();
      if (values.json) printJson(vms);
      else console.log(render(vms));
      return 0;
    }
    const tty = process.stdout.isTTY;
    let stop = false;
    process.once('SIGINT', () => (stop = true));
    while (!stop) {
      const vms = await sample();
      process.stdout.write((tty ? '\x1b[H\x1b[2J' : '') + `${new Date().toLocaleTimeString()}\n${render(vms)}\n`);
      await new Promise((r) => setTimeout(r, interval * 1000));
    }
    return 0;
  },
});
