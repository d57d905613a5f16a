// The simulator's waits: a request's steps are paced with one timer at a time and no listeners, so
// thousands of concurrent streams stay cheap and an abort cancels the pending wait at once.

export class Pacer {
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private resolveWait: ((proceed: boolean) => void) | null = null;
  private cancelled = false;

  /**
   * Resolves true after `milliseconds` (0: after the event loop has had a turn, so socket
   * `close` events are seen between chunks), or false once `cancel` was called.
   */
  wait(milliseconds: number): Promise<boolean> {
    if (this.cancelled) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      this.resolveWait = resolve;
      if (milliseconds >= 1) this.timer = setTimeout(this.onElapsed, milliseconds);
      else this.immediate = setImmediate(this.onElapsed);
    });
  }

  cancel(): void {
    this.cancelled = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.settle(false);
  }

  private readonly onElapsed = (): void => {
    this.settle(true);
  };

  private settle(proceed: boolean): void {
    this.timer = null;
    this.immediate = null;
    const resolve = this.resolveWait;
    this.resolveWait = null;
    resolve?.(proceed);
  }
}

/** `base` varied uniformly by ±`ratio` (0.2 = ±20 %), never negative. */
export function withJitter(base: number, ratio: number): number {
  if (ratio <= 0 || base <= 0) return base;
  return Math.max(0, base * (1 + ratio * (2 * Math.random() - 1)));
}

/** A delay that `cancel` ends early (used for fault and health delays, cut short by a client leaving). */
export function sleep(milliseconds: number): { promise: Promise<void>; cancel: () => void } {
  let timer: NodeJS.Timeout | null = null;
  let resolvePromise: () => void = () => undefined;
  const promise = new Promise<void>((resolve) => {
    resolvePromise = resolve;
    timer = setTimeout(resolve, milliseconds);
  });
  return {
    promise,
    cancel: () => {
      if (timer !== null) clearTimeout(timer);
      resolvePromise();
    },
  };
}
