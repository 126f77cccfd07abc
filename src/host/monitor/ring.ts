/** A fixed-capacity ring of samples, oldest overwritten first: the history behind `stats?history=`. */
export class Ring<T> {
  private readonly items: (T | undefined)[];
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('ring capacity must be a positive integer');
    this.items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  push(v: T): void {
    if (this.count < this.capacity) {
      this.items[(this.start + this.count) % this.capacity] = v;
      this.count++;
    } else {
      this.items[this.start] = v;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  /** The newest `n` items (all by default), oldest first. */
  last(n = this.count): T[] {
    const k = Math.max(0, Math.min(n, this.count));
    const out: T[] = [];
    for (let i = this.count - k; i < this.count; i++) out.push(this.items[(this.start + i) % this.capacity]!);
    return out;
  }

  clear(): void {
    this.start = 0;
    this.count = 0;
    this.items.fill(undefined);
  }
}
