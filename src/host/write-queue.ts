/**
 * Ordered asynchronous writes of a value that only matters in its latest version (a VM's vm.json). Writes run
 * one at a time in the order they were asked for; a value asked for while a write is in flight replaces any
 * other value still waiting, so a burst of state changes costs at most two writes and the file always ends
 * with the newest value. Each caller's promise settles when a write of its value, or of a newer one, landed.
 */
export class LatestValueWriter<T> {
  private waiting: { value: T; done: { resolve: () => void; reject: (err: unknown) => void }[] } | undefined;
  private inFlight: Promise<void> | undefined;

  constructor(private readonly writeValue: (value: T) => Promise<void>) {}

  write(value: T): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.waiting) {
        this.waiting.value = value;
        this.waiting.done.push({ resolve, reject });
      } else this.waiting = { value, done: [{ resolve, reject }] };
      if (!this.inFlight) this.pump();
    });
  }

  /** Resolves once nothing is waiting or in flight (errors were reported to the writers' callers). */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  private pump(): void {
    const batch = this.waiting;
    this.waiting = undefined;
    if (!batch) {
      this.inFlight = undefined;
      return;
    }
    this.inFlight = this.writeValue(batch.value).then(
      () => {
        for (const d of batch.done) d.resolve();
        this.pump();
      },
      (err: unknown) => {
        for (const d of batch.done) d.reject(err);
        this.pump();
      },
    );
  }
}
