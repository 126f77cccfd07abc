/** The lifecycle verbs (start, pause, resume, reboot, stop, shutdown): one action on one or more VMs. */
import type { ActionOutcome, VmAction } from '../host/actions.js';
import { ClientError } from './client.js';
import { defineVerb, enc, printJson } from './verb.js';

export function actionVerb(verb: string, describe: string, pick: (values: { force?: boolean }) => VmAction) {
  return defineVerb({
    name: verb,
    usage: `${verb} NAME... ${verb === 'stop' ? '[--force] [--timeout SECONDS]' : verb === 'shutdown' ? '[--timeout SECONDS]' : ''}[--json]\n\n${describe}`,
    options: {
      force: { type: 'boolean', short: 'f' },
      timeout: { type: 'string' },
    },
    minArgs: 1,
    async run({ values, positionals, client }) {
      const action = pick(values);
      const body: { timeoutSeconds?: number } = {};
      if (values.timeout !== undefined) {
        const t = Number(values.timeout);
        if (!Number.isInteger(t) || t < 0) throw new ClientError(2, '--timeout takes whole seconds');
        body.timeoutSeconds = t;
      }
      let status = 0;
      const results: ActionOutcome[] = [];
      for (const name of positionals) {
        try {
          const out = await client.json<ActionOutcome>('POST', `/vms/${enc(name)}/actions/${action}`, body);
          results.push(out);
          if (!values.json)
            console.log(
              `${name}: ${out.vm.state}${out.forced ? ' (the guest did not power off in time; stopped by force)' : ''}`,
            );
        } catch (err) {
          if (!(err instanceof ClientError) || positionals.length === 1) throw err;
          console.error(`typevisor ${verb}: ${name}: ${err.message}${err.code ? ` [${err.code}]` : ''}`);
          status = status || err.exitCode;
        }
      }
      if (values.json) printJson(positionals.length === 1 ? results[0] : results);
      return status;
    },
  });
}
