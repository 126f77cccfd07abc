/**
 * A FIFO async mutex. Image metadata (L1/L2 tables, refcounts, header) is updated by several awaits in a
 * row; without it two concurrent virtio requests could allocate the same free cluster or interleave a
 * refcount update with a table switch.
 */
export class AsyncMutex {
  private tail: Promise<void> = Promise.resolve();

  /** Runs fn once every earlier caller has finished; errors propagate to the caller only. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
