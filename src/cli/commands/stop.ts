import { actionVerb } from '../action-verb.js';

export const summary = 'stop a VM: gracefully through the guest agent (forced after --timeout), or --force at once';
export const run = actionVerb(
  'stop',
  'Without --force, asks the guest to power off and forces it after the timeout (default 30 s). --force ends it at once.',
  (v) => (v.force ? 'stop' : 'shutdown'),
);
