import { actionVerb } from '../action-verb.js';

export const summary = 'ask a VM to power off (the guest agent), forcing it after --timeout';
export const run = actionVerb('shutdown', 'Same as stop without --force.', () => 'shutdown');
