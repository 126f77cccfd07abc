// Create a VM. The form checks nothing the API does not: the daemon's own validation message is shown next to the
// field it names (and as a summary), so the page never disagrees with the API.
import { useState } from 'preact/hooks';
import { api, ApiError } from '../api.js';
import { refreshNow } from '../live.js';
import { navigate, vmPath } from '../router.js';
import type { VmView } from '../types.js';

interface DiskRow {
  sizeMiB: string;
  format: 'qcow2' | 'raw';
}

type Source = 'image' | 'kernel';

export function NewVmPage() {
  const [source, setSource] = useState<Source>('image');
  const [disks, setDisks] = useState<DiskRow[]>([]);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    const str = (k: string): string => String(f.get(k) ?? '').trim();
    const num = (k: string): number | string => (str(k) === '' ? '' : Number(str(k)));
    const body: Record<string, unknown> = {
      name: str('name'),
      vcpus: num('vcpus'),
      memoryMiB: num('memoryMiB'),
      firmware: str('firmware') || 'builtin',
      autostart: f.get('autostart') === 'on',
      rng: f.get('rng') === 'on',
      balloon: f.get('balloon') === 'on',
      virtioConsole: f.get('virtioConsole') === 'on',
      disks: disks.map((d) => ({ format: d.format, ...(d.sizeMiB.trim() === '' ? {} : { sizeMiB: Number(d.sizeMiB) }) })),
    };
    if (source === 'image') {
      body.image = str('image') || 'default';
      body.rootDisk = f.get('rootDisk') === 'on';
    } else {
      body.kernel = str('kernel');
      if (str('initrd')) body.initrd = str('initrd');
    }
    if (str('cmdline')) body.cmdline = str('cmdline');
    setBusy(true);
    setError(null);
    try {
      const vm = await api<VmView>('POST', '/vms', body);
      if (f.get('start') === 'on') await api('POST', `/vms/${vm.name}/actions/start`, {});
      refreshNow();
      navigate(vmPath(vm.name));
    } catch (err) {
      setError(err instanceof ApiError ? err : new ApiError(0, 'NETWORK', String(err)));
    } finally {
      setBusy(false);
    }
  };

  /** The API's message for this field, if that is the field it complained about. */
  const fieldError = (field: string) => {
    const f = error?.field;
    if (!f || !(f === field || f.startsWith(field + '.'))) return null;
    return (
      <span class="field-error" id={`err-${field}`} role="alert">
        {error!.message}
      </span>
    );
  };
  const describedBy = (field: string): string | undefined => (error?.field?.startsWith(field) ? `err-${field}` : undefined);

  return (
    <>
      <h1>New virtual machine</h1>
      <form
        class="create"
        onSubmit={(e) => void submit(e)}
        // Editing the field the API complained about clears the complaint.
        onInput={(e) => {
          const field = (e.target as HTMLInputElement).name;
          if (field && error?.field === field) setError(null);
        }}
        noValidate
        aria-label="Create a VM"
      >
        <fieldset>
          <legend>Machine</legend>
          <label>
            Name
            <input name="name" required autoFocus placeholder="web-1" aria-describedby={describedBy('name')} autoComplete="off" />
            {fieldError('name')}
          </label>
          <label>
            Architecture
            <select name="arch" disabled>
              <option>riscv64 (RV64GC, virt board)</option>
            </select>
          </label>
          <label>
            vCPUs
            <input name="vcpus" type="number" min={1} max={8} defaultValue="1" aria-describedby={describedBy('vcpus')} />
            {fieldError('vcpus')}
          </label>
          <label>
            Memory (MiB)
            <input
              name="memoryMiB"
              type="number"
              min={16}
              max={16384}
              step={16}
              defaultValue="256"
              aria-describedby={describedBy('memoryMiB')}
            />
            {fieldError('memoryMiB')}
          </label>
        </fieldset>

        <fieldset>
          <legend>Boot</legend>
          <div class="radios" role="radiogroup" aria-label="Boot from">
            <label class="check">
              <input type="radio" name="source" checked={source === 'image'} onChange={() => setSource('image')} /> Image
            </label>
            <label class="check">
              <input type="radio" name="source" checked={source === 'kernel'} onChange={() => setSource('kernel')} /> Kernel file
            </label>
          </div>
          {source === 'image' ? (
            <>
              <label>
                Image
                <input name="image" defaultValue="default" aria-describedby={describedBy('image')} />
                {fieldError('image')}
              </label>
              <label class="check">
                <input name="rootDisk" type="checkbox" defaultChecked /> Root disk (a qcow2 overlay of the image's filesystem)
              </label>
            </>
          ) : (
            <>
              <label>
                Kernel (path on the daemon host)
                <input name="kernel" placeholder="/path/to/Image" aria-describedby={describedBy('kernel')} />
                {fieldError('kernel')}
              </label>
              <label>
                Initrd (optional)
                <input name="initrd" aria-describedby={describedBy('initrd')} />
                {fieldError('initrd')}
              </label>
            </>
          )}
          <label>
            Kernel command line (optional)
            <input name="cmdline" aria-describedby={describedBy('cmdline')} />
            {fieldError('cmdline')}
          </label>
          <label>
            Firmware
            <input name="firmware" defaultValue="builtin" list="firmware-choices" aria-describedby={describedBy('firmware')} />
            <datalist id="firmware-choices">
              <option value="builtin" />
              <option value="none" />
            </datalist>
            {fieldError('firmware')}
          </label>
        </fieldset>

        <fieldset>
          <legend>Disks</legend>
          {disks.length === 0 && <p class="muted">No extra disks.</p>}
          {disks.map((d, i) => (
            <div class="disk-row" key={i}>
              <label>
                Size (MiB)
                <input
                  type="number"
                  min={1}
                  value={d.sizeMiB}
                  aria-describedby={describedBy(`disks.${i}`)}
                  onInput={(e) =>
                    setDisks(disks.map((x, j) => (j === i ? { ...x, sizeMiB: (e.target as HTMLInputElement).value } : x)))
                  }
                />
              </label>
              <label>
                Format
                <select
                  value={d.format}
                  onChange={(e) =>
                    setDisks(
                      disks.map((x, j) =>
                        j === i ? { ...x, format: (e.target as HTMLSelectElement).value as DiskRow['format'] } : x,
                      ),
                    )
                  }
                >
                  <option value="qcow2">qcow2</option>
                  <option value="raw">raw</option>
                </select>
              </label>
              <button type="button" onClick={() => setDisks(disks.filter((_, j) => j !== i))} aria-label={`Remove disk ${i + 1}`}>
                Remove
              </button>
              {fieldError(`disks.${i}`)}
            </div>
          ))}
          <button type="button" onClick={() => setDisks([...disks, { sizeMiB: '64', format: 'qcow2' }])}>
            Add disk
          </button>
        </fieldset>

        <fieldset>
          <legend>Devices and options</legend>
          <label class="check">
            <input name="virtioConsole" type="checkbox" defaultChecked /> virtio-console (guest agent, graceful shutdown)
          </label>
          <label class="check">
            <input name="balloon" type="checkbox" defaultChecked /> Memory balloon
          </label>
          <label class="check">
            <input name="rng" type="checkbox" defaultChecked /> Random number generator
          </label>
          <label class="check">
            <input name="autostart" type="checkbox" /> Start with the daemon
          </label>
          <label class="check">
            <input name="start" type="checkbox" /> Start it now
          </label>
        </fieldset>

        {error && (
          <p class="error" role="alert" data-code={error.code}>
            {error.code}: {error.message}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy} aria-busy={busy}>
          Create
        </button>
      </form>
    </>
  );
}
