// The host at a glance: cores, memory budget and use, charts, and every VM with its state, CPU and memory.
import type { Snapshot } from '../live.js';
import { useEffect } from 'preact/hooks';
import { hostHistory, seedHostHistory } from '../history.js';
import { Chart } from '../components/Chart.js';
import { Actions, StateBadge } from '../components/Actions.js';
import { bytes, duration, percent, rate } from '../format.js';
import { NEW_PATH, vmPath } from '../router.js';

export function HostPage({ snap }: { snap: Snapshot | undefined }) {
  const cpus = snap?.host.cpus;
  useEffect(() => {
    if (cpus) void seedHostHistory(cpus);
  }, [cpus]);
  if (!snap) return <p aria-busy="true">Loading…</p>;
  const { host, vms } = snap;
  const h = hostHistory();
  const budget = host.usage.memoryBytes;
  return (
    <>
      <h1>{host.hostname}</h1>
      <section class="cards" aria-label="Host summary">
        <div class="card">
          <h2>CPU</h2>
          <p class="big">{host.cpus} cores</p>
          <p class="muted">{host.cpuModel}</p>
          <p>
            VMs use {percent(host.usage.cpuPercent)} of one core · load {host.loadAverage.map((l) => l.toFixed(2)).join(' ')}
          </p>
        </div>
        <div class="card">
          <h2>Memory</h2>
          <p class="big">{bytes(host.memoryBytes)}</p>
          <p>
            VM budget {bytes(budget)} ({percent((budget / host.memoryBytes) * 100)}) · resident {bytes(host.usage.residentBytes)}
          </p>
          <meter min={0} max={host.memoryBytes} value={budget} aria-label="VM memory budget of host memory" />
          <p class="muted">{bytes(host.freeMemoryBytes)} free on the host</p>
        </div>
        <div class="card">
          <h2>VMs</h2>
          <p class="big">{host.vms.total}</p>
          <p>
            {Object.entries(host.vms.byState)
              .filter(([, n]) => n > 0)
              .map(([s, n]) => `${n} ${s}`)
              .join(' · ') || 'none yet'}
          </p>
          <p class="muted">{host.usage.vcpus} vCPUs given out</p>
        </div>
        <div class="card">
          <h2>Daemon</h2>
          <p class="big">{host.daemon.version}</p>
          <p>
            pid {host.daemon.pid} · up {duration(host.daemon.uptimeSeconds)} · {host.daemon.engine}
          </p>
          <p class="muted">RSS {bytes(host.daemon.rssBytes)}</p>
        </div>
      </section>

      <section class="charts" aria-label="Host charts">
        <Chart
          id="host-cpu"
          title="CPU (VMs, % of host)"
          t={h.t}
          lines={[{ label: 'VMs', values: h.cpu, color: '--chart-1' }]}
          format={percent}
          yMax={100}
        />
        <Chart
          id="host-mem"
          title="VM memory resident"
          t={h.t}
          lines={[{ label: 'resident', values: h.residentMiB, color: '--chart-2' }]}
          format={(v) => bytes(v * 2 ** 20)}
          mebibytes
        />
        <Chart
          id="host-disk"
          title="Disk"
          t={h.t}
          lines={[
            { label: 'read', values: h.diskRead, color: '--chart-3' },
            { label: 'write', values: h.diskWrite, color: '--chart-4' },
          ]}
          format={rate}
          binary
        />
        <Chart
          id="host-net"
          title="Network"
          t={h.t}
          lines={[
            { label: 'rx', values: h.netRx, color: '--chart-1' },
            { label: 'tx', values: h.netTx, color: '--chart-2' },
          ]}
          format={rate}
          binary
        />
      </section>

      <section aria-labelledby="vms-title">
        <div class="toolbar">
          <h2 id="vms-title">Virtual machines</h2>
          <a class="button primary" href={NEW_PATH}>
            New VM
          </a>
        </div>
        {vms.length === 0 ? (
          <p>
            No VMs yet. <a href={NEW_PATH}>Create one</a>.
          </p>
        ) : (
          <table class="vm-table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">State</th>
                <th scope="col">vCPUs</th>
                <th scope="col">CPU</th>
                <th scope="col">Memory</th>
                <th scope="col">Resident</th>
                <th scope="col">Uptime</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {vms.map((vm) => (
                <tr key={vm.name} data-vm={vm.name}>
                  <th scope="row">
                    <a href={vmPath(vm.name)}>{vm.name}</a>
                  </th>
                  <td>
                    <StateBadge state={vm.state} />
                  </td>
                  <td>{vm.config.cpus}</td>
                  <td>{vm.stats ? percent(vm.stats.cpuPercent) : '–'}</td>
                  <td>{vm.config.memoryMiB} MiB</td>
                  <td>{vm.stats ? bytes(vm.stats.residentBytes) : '–'}</td>
                  <td>{vm.stats ? duration(vm.stats.uptimeSeconds) : '–'}</td>
                  <td>
                    <Actions name={vm.name} state={vm.state} compact />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
