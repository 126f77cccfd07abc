/**
 * A VM's console output kept on disk, bounded: when console.log passes `maxBytes` it becomes console.log.1
 * (replacing the previous one) and a fresh console.log starts. Writes are batched so a chatty guest costs one
 * append per flush interval, not one per byte.
 */
import { appendFileSync, existsSync, readFileSync, renameSync, statSync } from 'node:fs';

export class ConsoleLog {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private size: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly path: string,
    private readonly maxBytes = 1 << 20,
    private readonly flushMs = 100,
  ) {
    this.size = existsSync(path) ? statSync(path).size : 0;
  }

  append(bytes: Uint8Array): void {
    this.pending.push(Buffer.from(bytes));
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= 64 * 1024) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => this.flush(), this.flushMs);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pendingBytes === 0) return;
    const data = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    try {
      if (this.size + data.length > this.maxBytes && this.size > 0) {
        renameSync(this.path, this.path + '.1');
        this.size = 0;
      }
      appendFileSync(this.path, data);
      this.size += data.length;
    } catch {
      // The VM directory may be gone (forced delete); console output is best effort.
    }
  }

  /** The retained log: the rotated part, then the current part (flushing first). */
  read(): Buffer {
    this.flush();
    const parts: Buffer[] = [];
    for (const p of [this.path + '.1', this.path]) if (existsSync(p)) parts.push(readFileSync(p));
    return Buffer.concat(parts);
  }
}
