// Admission like vLLM's scheduler: at most `maxRunning` requests generate at once (--max-num-seqs),
// the rest wait first-in first-out, and an optional `maxQueued` turns an overfull queue into a 503.

export interface SchedulerTicket {
  /** Leaves the queue, or frees the running slot; safe to call more than once. */
  cancel(): void;
}

interface QueueEntry {
  state: 'waiting' | 'running' | 'done';
  onGranted: () => void;
}

const COMPACT_AFTER = 1024;

export class Scheduler {
  private runningCount = 0;
  private waitingCount = 0;
  private queue: Array<QueueEntry | undefined> = [];
  private queueHead = 0;

  constructor(
    private maxRunning: number,
    private maxQueued: number | null,
  ) {}

  get running(): number {
    return this.runningCount;
  }

  get waiting(): number {
    return this.waitingCount;
  }

  /**
   * Returns null when the queue is full. `onGranted` runs when a slot is free: synchronously
   * inside `submit` when one is free now, else later from another request's `cancel`.
   */
  submit(onGranted: () => void): SchedulerTicket | null {
    const canRunNow = this.runningCount < this.maxRunning && this.waitingCount === 0;
    if (!canRunNow && this.maxQueued !== null && this.waitingCount >= this.maxQueued) return null;
    const entry: QueueEntry = { state: 'waiting', onGranted };
    const ticket: SchedulerTicket = { cancel: () => this.cancel(entry) };
    if (canRunNow) {
      this.grant(entry);
    } else {
      this.queue.push(entry);
      this.waitingCount++;
    }
    return ticket;
  }

  setLimits(limits: { maxRunning?: number; maxQueued?: number | null }): void {
    if (limits.maxRunning !== undefined) this.maxRunning = Math.max(1, limits.maxRunning);
    if (limits.maxQueued !== undefined) this.maxQueued = limits.maxQueued;
    this.drain();
  }

  private cancel(entry: QueueEntry): void {
    if (entry.state === 'waiting') {
      // Left in the array and skipped by `drain`, so cancelling stays O(1).
      this.waitingCount--;
    } else if (entry.state === 'running') {
      this.runningCount--;
    }
    const wasRunning = entry.state === 'running';
    entry.state = 'done';
    if (wasRunning) this.drain();
  }

  private grant(entry: QueueEntry): void {
    entry.state = 'running';
    this.runningCount++;
    entry.onGranted();
  }

  private drain(): void {
    while (this.runningCount < this.maxRunning && this.waitingCount > 0) {
      const entry = this.queue[this.queueHead];
      this.queue[this.queueHead] = undefined;
      this.queueHead++;
      if (entry === undefined || entry.state !== 'waiting') continue;
      this.waitingCount--;
      this.grant(entry);
    }
    if (this.queueHead >= COMPACT_AFTER && this.queueHead * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
    if (this.waitingCount === 0 && this.queueHead > 0) {
      this.queue = [];
      this.queueHead = 0;
    }
  }
}
