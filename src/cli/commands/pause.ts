import { actionVerb } from '../action-verb.js';

export const summary = 'pause a running VM (its vCPUs stop)';
export const run = actionVerb('pause', 'pause a running VM (its vCPUs stop)', () => 'pause');
