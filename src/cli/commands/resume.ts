import { actionVerb } from '../action-verb.js';

export const summary = 'resume a paused VM';
export const run = actionVerb('resume', 'resume a paused VM', () => 'resume');
