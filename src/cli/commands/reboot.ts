import { actionVerb } from '../action-verb.js';

export const summary = 'reset a running VM and boot it again';
export const run = actionVerb('reboot', 'reset a running VM and boot it again', () => 'reboot');
