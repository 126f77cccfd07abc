/**
 * A qemu-system-riscv64 `-M virt` guest (the default kernel and initramfs) driven over its serial console:
 * boot to the ready marker, then run shell command lines and collect what each printed.
 */
import { spawnConsole, type ConsoleProcess } from '../../test/helpers/console.js';
import { guestArtifacts } from '../../src/guests/index.js';

const g = guestArtifacts();

export class QemuGuest {
  readonly console: ConsoleProcess;
  private lines = 0;

  constructor(extra: readonly string[], append: string) {
    this.console = spawnConsole('qemu-system-riscv64', [
      ...['-M', 'virt', '-m', '256', '-smp', '1', '-nographic'],
      ...['-kernel', g.kernel, '-initrd', g.initramfs, '-append', append],
      ...extra,
    ]);
  }

  /** Resolves once qemu has printed anything (its netdevs exist by then). */
  async started(timeoutMs = 60_000): Promise<void> {
    await this.console.waitFor(/\S/, timeoutMs);
  }

  async ready(timeoutMs = 300_000): Promise<void> {
    await this.console.waitFor(g.marker, timeoutMs);
  }

  /**
   * Types one command line between two markers and returns what it printed. The markers are typed as `$((..))`
   * arithmetic, so the console's echo of the typed line never matches them. `cmd` may contain `&` between
   * commands but must not end with one (`cmd &; echo` is a syntax error in sh, and the END marker would never
   * come: that was the qemu half's hang).
   */
  async run(cmd: string, timeoutMs = 600_000): Promise<string> {
    if (/&\s*$/.test(cmd)) throw new Error(`a console command line must not end with '&': ${cmd}`);
    const k = 1000 + ++this.lines;
    this.console.send(`echo BEGIN-$((${k}+1)); ${cmd}; echo END-$((${k}+1))`);
    await this.console.waitFor(`BEGIN-${k + 1}`, timeoutMs);
    const m = await this.console.waitFor(new RegExp(`([\\s\\S]*?)END-${k + 1}`), timeoutMs);
    return m[1]!;
  }

  async stop(): Promise<void> {
    await this.console.kill();
  }
}
