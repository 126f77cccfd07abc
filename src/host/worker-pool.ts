/**
 * A small pool of things that are slow to start and fast to hand out: the daemon keeps a few VM workers started
 * ahead of need (thread up, modules loaded, no VM yet), so starting or restoring a VM does not wait for a thread
 * and its module loading (tens of milliseconds from dist, seconds under tsx).
 *
 * Bounded: at most `size` idle items. Refilled in the background, one at a time and a little after an item is
 * taken, so the spawn does not compete with the VM that just got its worker. Off where memory is tight: no new
 * item is started while the host has less than `minFreeBytes` free, and idle items are let go then. An item that
 * dies idle is dropped and replaced, unless idle items keep dying (MAX_IDLE_DEATHS in a row without a take): then
 * the pool waits for the next take rather than spawning in a loop.
 *
 * Used for VM worker threads (src/vm/worker-engine.ts) and VM processes (src/vm/process-pool.ts).
 */
import { freemem } from 'node:os';

export interface WarmPoolOptions<T> {
  /** Idle items to keep ready (0: the pool is off). */
  size: number;
  /** Starts one item; resolves once it is ready to be handed out. */
  start(): Promise<T>;
  /** Ends an item that will not be handed out (pool closing, memory tight). */
  dispose(item: T): Promise<void>;
  /** Resolves if the item dies while idle (it is then dropped from the pool). */
  died?(item: T): Promise<unknown>;
  /** No item is started while free host memory is below this (default 512 MiB). */
  minFreeBytes?: number;
  /** Delay before refilling after a take (default 250 ms). */
  refillDelayMs?: number;
  /** Free host memory (tests). */
  freeBytes?: () => number;
  log?: (line: string) => void;
}

export interface WarmPoolStats {
  size: number;
  idle: number;
  starting: boolean;
  /** Items handed out, and requests that found the pool empty. */
  hits: number;
  misses: number;
}

/** Idle items that may die one after the other before the pool stops replacing them until the next take. */
export const MAX_IDLE_DEATHS = 3;

export class WarmPool<T> {
  private readonly idle: T[] = [];
  private idleDeaths = 0;
  private starting = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private hits = 0;
  private misses = 0;

  constructor(private readonly opts: WarmPoolOptions<T>) {}

  /** Starts filling the pool (call once the host is up). */
  fill(): void {
    this.schedule(0);
  }

  /** A ready item, or undefined when none is idle (the caller starts its own). Refills afterwards. */
  take(): T | undefined {
    const item = this.idle.shift();
    if (item === undefined) this.misses++;
    else this.hits++;
    this.idleDeaths = 0;
    this.schedule(this.opts.refillDelayMs ?? 250);
    return item;
  }

  stats(): WarmPoolStats {
    return { size: this.opts.size, idle: this.idle.length, starting: this.starting, hits: this.hits, misses: this.misses };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const items = this.idle.splice(0);
    await Promise.all(items.map((i) => this.opts.dispose(i).catch(() => {})));
  }

  private schedule(delayMs: number): void {
    if (this.closed || this.opts.size <= 0 || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refill();
    }, delayMs);
    this.timer.unref();
  }

  private memoryTight(): boolean {
    return (this.opts.freeBytes ?? freemem)() < (this.opts.minFreeBytes ?? 512 * 2 ** 20);
  }

  private async refill(): Promise<void> {
    if (this.closed || this.starting) return;
    if (this.memoryTight()) {
      // Idle workers are memory nobody uses: give it back while the host is short.
      const items = this.idle.splice(0);
      if (items.length) this.opts.log?.(`warm pool: memory is tight, ${items.length} idle item(s) let go`);
      await Promise.all(items.map((i) => this.opts.dispose(i).catch(() => {})));
      return;
    }
    if (this.idle.length >= this.opts.size) return;
    // Idle items keep dying: no more until a take (a refill scheduled before the last death must not start one).
    if (this.idleDeaths >= MAX_IDLE_DEATHS) return;
    this.starting = true;
    let item: T;
    try {
      item = await this.opts.start();
    } catch (err) {
      this.opts.log?.(`warm pool: starting an item failed: ${(err as Error).message}`);
      return; // the next take tries again
    } finally {
      this.starting = false;
    }
    if (this.closed) return void (await this.opts.dispose(item).catch(() => {}));
    this.idle.push(item);
    void this.opts.died?.(item).then(() => {
      const i = this.idle.indexOf(item);
      if (i < 0) return; // handed out (or let go) before it ended
      this.idle.splice(i, 1);
      this.idleDeaths++;
      this.opts.log?.(`warm pool: an idle item died (${this.idleDeaths} in a row); dropped`);
      if (this.idleDeaths < MAX_IDLE_DEATHS) this.schedule(this.opts.refillDelayMs ?? 250);
    });
    this.schedule(0);
  }
}
