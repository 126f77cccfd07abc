/**
 * A shell on a daemon VM's serial console over the API's WebSocket: `sh(command)` runs one command and returns
 * its output between unique markers (split in the typed text so the echoed command line never matches them).
 */
import type { Client } from '../../src/cli/client.js';
import { TextWaiter } from './text-waiter.js';

export class VmConsole {
  text = '';
  private step = 0;
  private readonly waiter = new TextWaiter();
  private constructor(private readonly ws: ReturnType<Client['websocket']>) {
    ws.on('message', (b: Buffer) => {
      this.text += b.toString('latin1');
      this.waiter.notify();
    });
  }

  static async open(client: Client, name: string): Promise<VmConsole> {
    const ws = client.websocket(`/vms/${name}/console`);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new VmConsole(ws);
  }

  waitFor(pattern: string | RegExp, ms: number, from = 0): Promise<number> {
    return this.waiter.waitFor(
      () => this.text,
      pattern,
      ms,
      from,
      () => `timed out after ${ms} ms waiting for ${String(pattern)}\n--- console tail ---\n${this.text.slice(-2000)}`,
    );
  }

  async sh(command: string, ms = 120_000): Promise<string> {
    const n = ++this.step;
    const from = this.text.length;
    const tag = `${Date.now().toString(36)}${n}`;
    this.ws.send(`echo "BEGIN""${tag}"; ${command}; echo "END""${tag}"\n`);
    const start = await this.waitFor(`BEGIN${tag}\r\n`, ms, from);
    const end = await this.waitFor(`END${tag}`, ms, start);
    return this.text.slice(start, end - `END${tag}`.length).replace(/\r/g, '');
  }

  close(): void {
    this.ws.close();
  }
}
