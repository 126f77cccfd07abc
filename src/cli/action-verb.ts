/** The lifecycle verbs (start, pause, resume, reboot, stop, shutdown): one action on one or more VMs. */
import type { ActionOutcome, VmAction, VmView } from '../host/actions.js';
import { Client, ClientError, EXIT } from './client.js';
import { defineVerb, enc, printJson } from './verb.js';

const INACTIVE = new Set(['defined', 'stopped', 'crashed']);

/**
 * A refusal in the words of the verb the user typed: `stop` on a VM that is not running says it is already
 * stopped (exit 4), rather than the daemon's "cannot shutdown a VM that is stopped".
 */
async function explain(client: Client, verb: string, name: string, err: unknown): Promise<unknown> {
  if (!(err instanceof ClientError) || err.code !== 'INVALID_STATE') return err;
  if (verb !== 'stop' && verb !== 'shutdown' && verb !== 'pause') return err;
  const vm = await client.json<VmView>('GET', `/vms/${enc(name)}`).catch(() => undefined);
  if (!vm || !INACTIVE.has(vm.state)) return err;
  const what =
    vm.state === 'defined'
      ? 'has not been started'
      : vm.state === 'crashed'
        ? `is not running (it crashed${vm.stateReason ? `: ${vm.stateReason}` : ''})`
        : 'is already stopped';
  return new ClientError(EXIT.CONFLICT, `${name} ${what}`, err.code, err.status);
}

/** What a verb asks of the daemon: an action, graceful (reboot only: through the guest agent) or not. */
export interface PickedAction {
  action: VmAction;
  graceful?: boolean;
}

const OPTIONS_USAGE: Record<string, string> = {
  stop: '[--force] [--timeout SECONDS] ',
  reboot: '[--force] [--timeout SECONDS] ',
  shutdown: '[--timeout SECONDS] ',
};

export function actionVerb(verb: string, describe: string, pick: (values: { force?: boolean }) => VmAction | PickedAction) {
  return defineVerb({
    name: verb,
    usage: `${verb} NAME... ${OPTIONS_USAGE[verb] ?? ''}[--json]\n\n${describe}`,
    options: {
      force: { type: 'boolean', short: 'f' },
      timeout: { type: 'string' },
    },
    minArgs: 1,
    async run({ values, positionals, client }) {
      const picked = pick(values);
      const { action, graceful } = typeof picked === 'string' ? { action: picked, graceful: undefined } : picked;
      const body: { timeoutSeconds?: number; graceful?: boolean } = graceful ? { graceful } : {};
      if (values.timeout !== undefined) {
        const t = Number(values.timeout);
        if (!Number.isInteger(t) || t < 0) throw new ClientError(2, '--timeout takes whole seconds');
        body.timeoutSeconds = t;
      }
      let status = 0;
      const results: ActionOutcome[] = [];
      for (const name of positionals) {
        try {
          const out = await client
            .json<ActionOutcome>('POST', `/vms/${enc(name)}/actions/${action}`, body)
            .catch(async (err: unknown) => {
              throw await explain(client, verb, name, err);
            });
          results.push(out);
          if (!values.json)
            console.log(
              `${name}: ${out.vm.state}${out.forced ? (action === 'reboot' ? ' (the guest did not reboot in time, or has no agent; reset)' : ' (the guest did not power off in time; stopped by force)') : ''}`,
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
