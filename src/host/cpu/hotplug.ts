/**
 * vCPU hot-plug of a running VM: the guest is asked (through its agent) to take harts offline or bring them
 * online via /sys/devices/system/cpu/cpuN/online; Linux then stops or starts those harts through SBI HSM, and
 * the host confirms from the machine's HSM state. Hart 0 (the boot hart) always stays online, and no VM gets
 * more harts than it was created with (the board's hart count is fixed at boot).
 */
export class HotplugError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HotplugError';
  }
}

/** Checks the request; returns the problem, or null. */
export function hotplugProblem(online: number, max: number): string | null {
  if (!Number.isInteger(online) || online < 1) return `vcpus must be a whole number from 1 to ${max}`;
  if (online > max) return `the VM was created with ${max} vCPUs; a running VM can have at most that many online`;
  return null;
}

/** The guest command (argv for the agent) that makes exactly harts 0..online-1 online. */
export function hotplugCommand(online: number, max: number): string[] {
  // Offline first (highest first), then online, so the count never overshoots in between.
  const lines = [
    'set -e',
    `max=${max}; want=${online}`,
    'i=$((max - 1))',
    'while [ $i -ge 1 ]; do',
    '  f=/sys/devices/system/cpu/cpu$i/online',
    '  [ -e "$f" ] || { echo "cpu$i cannot be hot-plugged (no $f)" >&2; exit 3; }',
    '  if [ $i -ge $want ] && [ "$(cat "$f")" = 1 ]; then echo 0 > "$f"; fi',
    '  i=$((i - 1))',
    'done',
    'i=1',
    'while [ $i -lt $want ]; do',
    '  f=/sys/devices/system/cpu/cpu$i/online',
    '  if [ "$(cat "$f")" = 0 ]; then echo 1 > "$f"; fi',
    '  i=$((i + 1))',
    'done',
    'cat /sys/devices/system/cpu/online',
  ];
  return ['sh', '-c', lines.join('\n')];
}
