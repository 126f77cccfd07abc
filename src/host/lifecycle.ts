/**
 * The VM lifecycle as one explicit state machine. Every state change in the host goes through `transition`,
 * so a wrong-state action is refused in one place with one error code (the API maps it to 409).
 *
 *   defined ─start→ running ⇄ paused
 *   running/paused/rebooting ─stop→ stopped ─start→ running
 *   running ─reboot→ rebooting ─rebooted→ running
 *   any live state ─crash→ crashed ─start→ running
 */
export const VM_STATES = ['defined', 'running', 'paused', 'stopped', 'rebooting', 'crashed'] as const;
export type VmState = (typeof VM_STATES)[number];

/** What can happen to a VM: user actions first, then engine/guest events. */
export const LIFECYCLE_EVENTS = [
  'start',
  'pause',
  'resume',
  'stop', // forced: the worker is terminated
  'shutdown', // graceful: the guest agent is asked to power off; the VM stays running until it does
  'reboot',
  'delete',
  'update',
  'guest-poweroff', // the guest powered itself off (or the graceful shutdown completed)
  'guest-reboot', // the guest asked for a reset
  'rebooted', // the engine finished a reboot
  'crash', // the worker died or the machine faulted
] as const;
export type LifecycleEvent = (typeof LIFECYCLE_EVENTS)[number];

/** States a VM may be in when nothing is running for it (its disks may be changed, it may be deleted). */
export const INACTIVE_STATES: readonly VmState[] = ['defined', 'stopped', 'crashed'];
/** States where a worker exists. */
export const ACTIVE_STATES: readonly VmState[] = ['running', 'paused', 'rebooting'];

const TABLE: Record<VmState, Partial<Record<LifecycleEvent, VmState>>> = {
  defined: { start: 'running', delete: 'defined', update: 'defined' },
  running: {
    pause: 'paused',
    stop: 'stopped',
    shutdown: 'running',
    reboot: 'rebooting',
    'guest-poweroff': 'stopped',
    'guest-reboot': 'rebooting',
    crash: 'crashed',
  },
  paused: { resume: 'running', stop: 'stopped', crash: 'crashed' },
  rebooting: { stop: 'stopped', rebooted: 'running', 'guest-poweroff': 'stopped', crash: 'crashed' },
  stopped: { start: 'running', delete: 'stopped', update: 'stopped' },
  crashed: { start: 'running', stop: 'crashed', delete: 'crashed', update: 'crashed' },
};

export class TransitionError extends Error {
  readonly code = 'INVALID_STATE';
  constructor(
    readonly from: VmState,
    readonly event: LifecycleEvent,
  ) {
    super(`cannot ${event} a VM that is ${from}${hint(from, event)}`);
    this.name = 'TransitionError';
  }
}

function hint(from: VmState, event: LifecycleEvent): string {
  if (event === 'delete') return ' (stop it first, or delete with force)';
  if (event === 'update') return ' (stop it first)';
  if (from === 'paused' && (event === 'shutdown' || event === 'reboot')) return ' (resume it first)';
  return '';
}

/** The state after `event`, or undefined when the event is not allowed in `from`. */
export function nextState(from: VmState, event: LifecycleEvent): VmState | undefined {
  return TABLE[from][event];
}

/** The state after `event`; throws TransitionError when the event is not allowed in `from`. */
export function transition(from: VmState, event: LifecycleEvent): VmState {
  const to = nextState(from, event);
  if (to === undefined) throw new TransitionError(from, event);
  return to;
}

/** A forced delete is allowed in every state: the host stops the worker first. */
export function canForceDelete(_from: VmState): true {
  return true;
}

export function isActive(state: VmState): boolean {
  return ACTIVE_STATES.includes(state);
}

export function isVmState(s: unknown): s is VmState {
  return typeof s === 'string' && (VM_STATES as readonly string[]).includes(s);
}
