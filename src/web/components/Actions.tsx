// Lifecycle buttons for one VM: each is enabled only in the states that allow it; the API's refusal (if the
// state moved meanwhile) is shown, not swallowed.
import { useState } from 'preact/hooks';
import { api, ApiError } from '../api.js';
import { refreshNow } from '../live.js';
import { allows, type VmAction, type VmState } from '../types.js';

const LABELS: Record<VmAction, string> = {
  start: 'Start',
  shutdown: 'Shut down',
  reboot: 'Reboot',
  pause: 'Pause',
  resume: 'Resume',
  stop: 'Stop',
};
const ORDER: VmAction[] = ['start', 'shutdown', 'reboot', 'pause', 'resume', 'stop'];

export function StateBadge({ state }: { state: VmState }) {
  return (
    <span class={`state state-${state}`} data-state={state}>
      {state}
    </span>
  );
}

interface Props {
  name: string;
  state: VmState;
  compact?: boolean;
  onDeleted?: () => void;
}

export function Actions({ name, state, compact, onDeleted }: Props) {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const run = async (what: VmAction | 'delete'): Promise<void> => {
    if (what === 'delete' && !confirm(`Delete VM ${name} and its disks?`)) return;
    setBusy(what);
    setError(null);
    try {
      if (what === 'delete') {
        await api('DELETE', `/vms/${name}`);
        onDeleted?.();
      } else await api('POST', `/vms/${name}/actions/${what}`, {});
    } catch (err) {
      setError(err instanceof ApiError ? `${err.code}: ${err.message}` : String(err));
    } finally {
      setBusy(null);
      refreshNow();
    }
  };

  return (
    <div class={compact ? 'actions compact' : 'actions'} role="group" aria-label={`Actions for ${name}`}>
      {ORDER.map((a) => (
        <button
          type="button"
          key={a}
          data-action={a}
          disabled={busy !== null || !allows(state, a)}
          aria-busy={busy === a}
          onClick={() => void run(a)}
          aria-label={compact ? `${LABELS[a]} ${name}` : undefined}
        >
          {LABELS[a]}
        </button>
      ))}
      <button
        type="button"
        class="danger"
        data-action="delete"
        disabled={busy !== null || !allows(state, 'delete')}
        onClick={() => void run('delete')}
        aria-label={compact ? `Delete ${name}` : undefined}
      >
        Delete
      </button>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
