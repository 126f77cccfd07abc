import type { HostEvent } from '../../host/events.js';
import { defineVerb, enc } from '../verb.js';

export const summary = 'show VM state changes, settings changes and policy actions (-f follows them live)';

function line(e: HostEvent): string {
  const time = e.time.slice(11, 19);
  const what =
    e.type === 'vm-state'
      ? `${e.previous} -> ${e.state}`
      : e.type === 'policy'
        ? `${e.policy} ${e.action}`
        : e.type === 'settings'
          ? 'settings'
          : e.type.replace(/^vm-/, '');
  return `${time}  ${e.vm.padEnd(16)} ${what.padEnd(24)} ${e.reason}`;
}

export const run = defineVerb({
  name: 'events',
  usage: `events [NAME] [-f|--follow] [--json]

Prints the daemon's recent events (the last 1000), then with --follow every new one as it happens (Ctrl-C
stops). --json prints one JSON object per line.`,
  options: { follow: { type: 'boolean', short: 'f' } },
  maxArgs: 1,
  async run({ values, positionals, client }) {
    const vm = positionals[0];
    const filter = vm ? `&vm=${enc(vm)}` : '';
    const print = (e: HostEvent) => console.log(values.json ? JSON.stringify(e) : line(e));
    if (vm) await client.json('GET', `/vms/${enc(vm)}`); // an unknown VM is an error (exit 3), not silence
    if (!values.follow) {
      const { events } = await client.json<{ events: HostEvent[] }>('GET', `/events?follow=false${filter}`);
      events.forEach(print);
      return 0;
    }
    const res = await client.stream(`/events?follow=true${filter}`);
    return new Promise<number>((resolve) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = /^data: (.*)$/m.exec(block);
          if (data) print(JSON.parse(data[1]!) as HostEvent);
        }
      });
      res.on('end', () => resolve(0));
      res.on('error', () => resolve(5));
      process.once('SIGINT', () => {
        res.destroy();
        resolve(0);
      });
    });
  },
});
