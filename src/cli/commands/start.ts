import { actionVerb } from '../action-verb.js';

export const summary = 'boot a defined or stopped VM';
export const run = actionVerb('start', 'boot a defined or stopped VM', () => 'start');
