/**
 * Waiting for text in output that keeps growing (a guest console): the owner calls `notify()` whenever the text
 * grew, and `waitFor` resolves with the offset just past the first match after `from`.
 */
export class TextWaiter {
  private waiters: (() => void)[] = [];

  notify(): void {
    for (const w of this.waiters) w();
  }

  /** Rejects after `ms` with `timeoutMessage()` (which should carry the output's tail). */
  waitFor(text: () => string, pattern: string | RegExp, ms: number, from: number, timeoutMessage: () => string): Promise<number> {
    const find = (): number => {
      const t = text().slice(from);
      if (typeof pattern === 'string') {
        const i = t.indexOf(pattern);
        return i < 0 ? -1 : from + i + pattern.length;
      }
      const m = pattern.exec(t);
      return m ? from + m.index + m[0].length : -1;
    };
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const at = find();
        if (at < 0) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(at);
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(timeoutMessage()));
      }, ms);
      this.waiters.push(check);
      check();
    });
  }
}
