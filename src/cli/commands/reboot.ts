import { actionVerb } from '../action-verb.js';

export const summary = 'reboot a VM: gracefully through the guest agent (reset after --timeout), or --force to reset at once';
export const run = actionVerb(
  'reboot',
  'Without --force, asks the guest agent to reboot (a systemd guest stops its services first) and resets the VM if it has not rebooted after the timeout (default 30 s), or at once when it has no agent. --force resets it at once.',
  (v) => (v.force ? 'reboot' : { action: 'reboot', graceful: true }),
);
