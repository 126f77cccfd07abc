// One VM: configuration, live charts, lifecycle buttons, the console and the console log.
import { lazy, Suspense } from 'preact/compat';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, request } from '../api.js';
import type { Snapshot } from '../live.js';
import { refreshNow } from '../live.js';
import { seedVmHistory, seriesFor } from '../history.js';
import { Chart } from '../components/Chart.js';
import { Actions, StateBadge } from '../components/Actions.js';
import { bytes, duration, percent, rate } from '../format.js';
import { HOST_PATH, navigate } from '../router.js';
import { isActive, type VmView } from '../types.js';

const Console = lazy(() => import('../components/Console.js'));

function ConfigTable({ vm }: { vm: VmView }) {
  const c = vm.config;
  const rows: [string, string][] = [
    ['Architecture', 'riscv64 (RV64GC, virt board)'],
    ['vCPUs', String(c.cpus)],
    ['Memory', `${c.memoryMiB} MiB`],
    ['Image', vm.image ?? '–'],
    ['Kernel', c.kernel ?? '–'],
    ['Initrd', c.initrd ?? '–'],
    ['Command line', c.append ?? '–'],
    ['Firmware', c.firmware.kind === 'file' ? (c.firmware.path ?? 'file') : c.firmware.kind],
    ['Disks', c.disks.length ? c.disks.map((d) => `${d.format}${d.readOnly ? ' (ro)' : ''} ${d.path}`).join('\n') : 'none'],
    [
      'Devices',
      [c.rng && 'rng', c.balloon && 'balloon', c.virtioConsole && 'virtio-console'].filter(Boolean).join(', ') || 'none',
    ],
    ['Autostart', vm.autostart ? 'yes' : 'no'],
    ['UUID', vm.uuid],
    ['Created', new Date(vm.createdAt).toLocaleString()],
  ];
  return (
    <dl class="config">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

/** PATCH /vms/NAME: vCPUs, memory, command line and autostart while stopped; the balloon target while running. */
function EditForm({ vm }: { vm: VmView }) {
  const active = isActive(vm.state);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    const patch: Record<string, unknown> = {};
    if (active) {
      const b = String(f.get('balloonTargetMiB') ?? '');
      if (b !== '') patch.balloonTargetMiB = Number(b);
    } else {
      if (Number(f.get('vcpus')) !== vm.config.cpus) patch.vcpus = Number(f.get('vcpus'));
      if (Number(f.get('memoryMiB')) !== vm.config.memoryMiB) patch.memoryMiB = Number(f.get('memoryMiB'));
      const cmdline = String(f.get('cmdline') ?? '');
      if (cmdline !== (vm.config.append ?? '')) patch.cmdline = cmdline;
      const autostart = f.get('autostart') === 'on';
      if (autostart !== vm.autostart) patch.autostart = autostart;
    }
    setError(null);
    setSaved(false);
    try {
      await api('PATCH', `/vms/${vm.name}`, patch);
      setSaved(true);
      refreshNow();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    }
  };
  return (
    <form class="edit" onSubmit={(e) => void submit(e)} aria-label="Change settings" noValidate>
      <h2>Settings</h2>
      {active ? (
        <label>
          Balloon target (MiB the guest gives back)
          <input name="balloonTargetMiB" type="number" min={0} max={vm.config.memoryMiB} inputMode="numeric" />
        </label>
      ) : (
        <>
          <label>
            vCPUs{' '}
            <input name="vcpus" type="number" min={1} max={8} defaultValue={String(vm.config.cpus)} key={`c${vm.updatedAt}`} />
          </label>
          <label>
            Memory (MiB){' '}
            <input
              name="memoryMiB"
              type="number"
              min={16}
              max={16384}
              defaultValue={String(vm.config.memoryMiB)}
              key={`m${vm.updatedAt}`}
            />
          </label>
          <label>
            Kernel command line{' '}
            <input name="cmdline" type="text" defaultValue={vm.config.append ?? ''} key={`a${vm.updatedAt}`} />
          </label>
          <label class="check">
            <input name="autostart" type="checkbox" defaultChecked={vm.autostart} key={`s${vm.updatedAt}`} /> Start with the
            daemon
          </label>
        </>
      )}
      <button type="submit">Apply</button>
      {saved && <span role="status">Saved.</span>}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

function ConsoleLog({ name }: { name: string }) {
  const [text, setText] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = async (): Promise<void> => {
    try {
      setText(await (await request('GET', `/vms/${name}/console.log`)).text());
      setError(null);
    } catch (err) {
      setError(String(err));
    }
  };
  return (
    <details class="console-log" onToggle={(e) => (e.currentTarget as HTMLDetailsElement).open && void load()}>
      <summary>Console log</summary>
      <button type="button" onClick={() => void load()}>
        Refresh
      </button>
      {error && <p class="error">{error}</p>}
      <pre tabIndex={0}>{text ?? 'Loading…'}</pre>
    </details>
  );
}

export function VmPage({ name, snap }: { name: string; snap: Snapshot | undefined }) {
  useEffect(() => void seedVmHistory(name), [name]);
  if (!snap) return <p aria-busy="true">Loading…</p>;
  const vm = snap.vms.find((v) => v.name === name);
  if (!vm)
    return (
      <>
        <h1>{name}</h1>
        <p>
          There is no VM called {name}. <a href={HOST_PATH}>Back to the host</a>.
        </p>
      </>
    );
  const s = seriesFor(name);
  const st = vm.stats;
  const mib = (v: number): string => bytes(v * 2 ** 20);
  return (
    <>
      <div class="vm-head">
        <h1>{vm.name}</h1>
        <StateBadge state={vm.state} />
        {vm.stateReason && <span class="muted">{vm.stateReason}</span>}
        {st && <span class="muted">up {duration(st.uptimeSeconds)}</span>}
      </div>
      <Actions name={vm.name} state={vm.state} onDeleted={() => navigate(HOST_PATH)} />

      <section class="charts" aria-label="Live charts">
        <Chart
          id="vm-cpu"
          title="CPU (% of one host core)"
          t={s.t}
          lines={[{ label: 'CPU', values: s.cpu, color: '--chart-1' }]}
          format={percent}
          yMax={Math.max(100, vm.config.cpus * 100)}
        />
        <Chart
          id="vm-mem"
          title={`Memory (of ${vm.config.memoryMiB} MiB)`}
          t={s.t}
          lines={[
            { label: 'resident', values: s.residentMiB, color: '--chart-2' },
            { label: 'balloon', values: s.balloonMiB, color: '--chart-4' },
          ]}
          format={mib}
          mebibytes
        />
        <Chart
          id="vm-disk"
          title="Disk"
          t={s.t}
          lines={[
            { label: 'read', values: s.diskRead, color: '--chart-3' },
            { label: 'write', values: s.diskWrite, color: '--chart-4' },
          ]}
          format={rate}
          binary
        />
        <Chart
          id="vm-net"
          title="Network"
          t={s.t}
          lines={[
            { label: 'rx', values: s.netRx, color: '--chart-1' },
            { label: 'tx', values: s.netTx, color: '--chart-2' },
          ]}
          format={rate}
          binary
        />
      </section>

      <Suspense fallback={<p aria-busy="true">Loading the console…</p>}>
        <Console name={vm.name} active={isActive(vm.state)} />
      </Suspense>
      <ConsoleLog name={vm.name} />

      <div class="columns">
        <section aria-label="Configuration">
          <h2>Configuration</h2>
          <ConfigTable vm={vm} />
        </section>
        <EditForm vm={vm} />
      </div>
    </>
  );
}
