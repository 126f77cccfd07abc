import type { SnapshotOutcome, SnapshotView } from '../../host/actions.js';
import { defineVerb, enc, printJson, UsageError } from '../verb.js';

export const summary = 'snapshots of a VM: create, ls, restore, rm';
export const run = defineVerb({
  name: 'snapshot',
  usage: `snapshot create NAME [SNAP] [--live | --disk-only] [--json]
       snapshot ls NAME [--json]
       snapshot restore NAME SNAP [--json]
       snapshot rm NAME SNAP

A snapshot holds a point-in-time state of every disk (a read-only qcow2 layer) and, for a running or paused VM,
its memory and device state (--live, the default for such a VM; the guest pauses while its RAM is written).
Restoring one reverts the disks and, when it holds memory, resumes the guest exactly where it was. Snapshots
form a tree: restore any of them, delete any of them (also in the middle) without losing the others.`,
  options: { live: { type: 'boolean' }, 'disk-only': { type: 'boolean' } },
  minArgs: 2,
  maxArgs: 3,
  async run({ values, positionals, client }) {
    const [sub, name, snap] = positionals as [string, string, string | undefined];
    const base = `/vms/${enc(name)}/snapshots`;
    switch (sub) {
      case 'create': {
        if (values.live && values['disk-only']) throw new UsageError('--live and --disk-only exclude each other');
        const out = await client.json<SnapshotOutcome>('POST', base, {
          ...(snap ? { name: snap } : {}),
          diskOnly: !!values['disk-only'],
        });
        if (values.json) printJson(out);
        else
          console.log(
            `${name}: snapshot ${out.snapshot.name} created (${out.snapshot.hasState ? `memory ${(out.snapshot.stateBytes / 2 ** 20).toFixed(1)} MiB, guest paused ${out.workerMs?.toFixed(0)} ms` : 'disks only'})`,
          );
        return 0;
      }
      case 'ls': {
        if (snap) throw new UsageError('snapshot ls takes only the VM name');
        const out = await client.json<{ snapshots: SnapshotView[] }>('GET', base);
        if (values.json) printJson(out.snapshots);
        else {
          console.log(['NAME', 'PARENT', 'CREATED', 'VM STATE', 'MEMORY', ''].join('\t'));
          for (const s of out.snapshots)
            console.log(
              [
                s.name,
                s.parent ?? '-',
                s.createdAt,
                s.vmState,
                s.hasState ? `${(s.stateBytes / 2 ** 20).toFixed(1)} MiB` : '-',
                s.current ? '(current)' : '',
              ].join('\t'),
            );
        }
        return 0;
      }
      case 'restore': {
        if (!snap) throw new UsageError('snapshot restore needs NAME and SNAP');
        const out = await client.json<SnapshotOutcome>('POST', `${base}/${enc(snap)}/restore`, {});
        if (values.json) printJson(out);
        else
          console.log(
            `${name}: reverted to ${snap}; now ${out.vm.state}${out.workerMs !== undefined ? ` (resumed in ${out.workerMs.toFixed(0)} ms)` : ''}`,
          );
        return 0;
      }
      case 'rm': {
        if (!snap) throw new UsageError('snapshot rm needs NAME and SNAP');
        const out = await client.json<{ deleted: string }>('DELETE', `${base}/${enc(snap)}`);
        if (values.json) printJson(out);
        else console.log(`${name}: snapshot ${out.deleted} deleted`);
        return 0;
      }
      default:
        throw new UsageError(`unknown subcommand '${sub}'`);
    }
  },
});
