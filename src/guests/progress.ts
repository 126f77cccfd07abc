// Progress for long builds: which recipe is building, for how long, and the last thing its tools printed.
// On a TTY one status line is redrawn every second; otherwise (CI logs) a heartbeat line every 20 s.

export interface ProgressSink {
  write(text: string): void;
  readonly isTTY: boolean;
}

export function formatElapsed(ms: number): string {
  const s = Math.floor(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

export class Progress {
  private name = '';
  private started = 0;
  private last = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly sink: ProgressSink = { write: (t) => process.stdout.write(t), isTTY: process.stdout.isTTY === true },
    private readonly heartbeatMs = 20_000,
  ) {}

  /** A line that is not about the running step (cache hits, summaries). */
  say(line: string): void {
    this.clearStatus();
    this.sink.write(line + '\n');
  }

  begin(name: string, detail: string): void {
    this.end();
    this.name = name;
    this.started = Date.now();
    this.last = '';
    this.say(`${name}: building (${detail})`);
    this.timer = setInterval(() => this.tick(), this.sink.isTTY ? 1000 : this.heartbeatMs);
    this.timer.unref();
  }

  /** The latest line of tool output: shown in the status line / next heartbeat. */
  activity(line: string): void {
    // Separator lines ('#', '***') say nothing about where the build is.
    if (/[A-Za-z0-9]/.test(line)) this.last = line;
  }

  /** Stops the heartbeat; returns the elapsed milliseconds of the step that was running. */
  end(): number {
    if (!this.timer) return 0;
    clearInterval(this.timer);
    this.timer = undefined;
    this.clearStatus();
    return Date.now() - this.started;
  }

  private status(): string {
    const last = this.last.length > 70 ? this.last.slice(0, 67) + '...' : this.last;
    return `${this.name}: still building, ${formatElapsed(Date.now() - this.started)} elapsed${last ? ` (${last})` : ''}`;
  }

  private tick(): void {
    if (this.sink.isTTY) this.sink.write(`\r\x1b[K${this.status()}`);
    else this.sink.write(this.status() + '\n');
  }

  private clearStatus(): void {
    if (this.sink.isTTY && this.timer) this.sink.write('\r\x1b[K');
  }
}
