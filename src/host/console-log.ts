/**
 * A VM's console output kept on disk, bounded: when console.log passes `maxBytes` it becomes console.log.1
 * (replacing the previous one) and a fresh console.log starts. Writes are batched so a chatty guest costs one
 * append per flush interval, not one per byte, and go through fs/promises one after another (a chain), so the
 * daemon's event loop never waits for the disk and the bytes land in the order the guest wrote them.
 */
import { appendFile, readFile, rename, stat } from 'node:fs/promises';

export class ConsoleLog {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Size of console.log on disk; learnt (asynchronously) by the first write. */
  private size: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The writes in order: each starts when the previous one finished. */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly maxBytes = 1 << 20,
    private readonly flushMs = 100,
  ) {}

  append(bytes: Uint8Array): void {
    this.pending.push(Buffer.from(bytes));
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= 64 * 1024) void this.flush();
    else if (!this.timer) this.timer = setTimeout(() => void this.flush(), this.flushMs);
  }

  /** Queues what is buffered; resolves when it (and every earlier write) is on disk. Never rejects. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pendingBytes > 0) {
      const data = Buffer.concat(this.pending);
      this.pending = [];
      this.pendingBytes = 0;
      this.chain = this.chain.then(() => this.writeOut(data));
    }
    return this.chain;
  }

  private async writeOut(data: Buffer): Promise<void> {
    try {
      this.size ??= await stat(this.path).then(
        (s) => s.size,
        () => 0,
      );
      if (this.size + data.length > this.maxBytes && this.size > 0) {
        await rename(this.path, this.path + '.1');
        this.size = 0;
      }
      await appendFile(this.path, data);
      this.size += data.length;
    } catch {
      // The VM directory may be gone (forced delete); console output is best effort.
    }
  }

  /** The retained log: the rotated part, then the current part (after every pending write). */
  read(): Promise<Buffer> {
    // Read inside the chain, so no rotation can happen between reading the two parts.
    const result = this.flush().then(async () => {
      const parts: Buffer[] = [];
      for (const p of [this.path + '.1', this.path]) {
        const part = await readFile(p).catch(() => undefined);
        if (part) parts.push(part);
      }
      return Buffer.concat(parts);
    });
    this.chain = result.then(() => {});
    return result;
  }
}
