// vLLM's answer body, fed straight by undici's dispatch handler (upstream-dispatch.ts) and read by
// the relay as an async iterable of chunks, or whole. Why not undici's `request()` and its Readable
// body: each chunk then went through the Readable's machinery and a 'data' event before the relay
// saw it, and each request built the request API's handler, URL and stream objects — about a
// fifth of a minimal proxy's CPU per request (measured interleaved: 84 → 64 µs). Backpressure is
// kept: undici is paused while chunks wait unread, and flows again as they are read.
import type { Dispatcher } from '../platform/http-client.js';

/** Chunks held unread before undici is paused: the relay normally takes each as it comes. */
const pauseAbove = 16;
/** Held chunks at which a paused body flows again. */
const resumeBelow = 4;
/** What dump() reads to keep the connection for the next request; a longer body is cut instead. */
const dumpLimitBytes = 128 * 1024;

type Waiting = { resolve: (result: IteratorResult<Buffer>) => void; reject: (error: unknown) => void };

export class UpstreamBody implements AsyncIterable<Buffer> {
  private held: Buffer[] = [];
  private waiting: Waiting | null = null;
  private ended = false;
  private failure: Error | null = null;
  /** While the whole body is being read (text, bytes, dump): nothing pauses it. */
  private collecting: { resolve: () => void; reject: (error: unknown) => void; limitBytes: number; bytes: number } | null = null;
  /** Set once `[DONE]` came: leaving then reads the end instead of cutting (endExpected). */
  private drainMs: number | null = null;

  constructor(private readonly controller: Dispatcher.DispatchController) {}

  /** A chunk from undici. */
  push(chunk: Buffer): void {
    if (this.collecting !== null) {
      this.held.push(chunk);
      this.collecting.bytes += chunk.length;
      if (this.collecting.bytes > this.collecting.limitBytes) this.cutTooLong();
      return;
    }
    const waiting = this.takeWaiting();
    if (waiting !== null) {
      waiting.resolve({ value: chunk, done: false });
      return;
    }
    this.held.push(chunk);
    if (this.held.length >= pauseAbove && !this.controller.paused) this.controller.pause();
  }

  /** The body is complete. */
  end(): void {
    this.ended = true;
    this.takeWaiting()?.resolve({ value: undefined, done: true });
    this.collecting?.resolve();
  }

  /** The body failed (a cut, a timeout, an abort): the first failure is kept. */
  fail(error: Error): void {
    this.failure ??= error;
    this.takeWaiting()?.reject(this.failure);
    this.collecting?.reject(this.failure);
  }

  /**
   * vLLM sent `[DONE]`: only the body's end should follow, and it may come in a write of its own.
   * A reader that leaves now has the end read for it, off its path, for up to `waitMs`, so the
   * connection can carry the next request; the answer is cut only if the end does not come.
   */
  endExpected(waitMs = 1000): void {
    this.drainMs = waitMs;
  }

  /** Stops the answer (the reader left early): vLLM sees the connection close and frees the slot. */
  destroy(reason: Error = new Error('the answer was no longer read')): void {
    if (!this.ended && this.failure === null && !this.controller.aborted) this.controller.abort(reason);
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return {
      next: () => {
        // A failure (an abort, a timeout, a cut) comes before what was held: an answer cut by the
        // total timeout must not go on to its end.
        if (this.failure !== null) return Promise.reject(this.failure);
        const chunk = this.held.shift();
        if (chunk !== undefined) {
          if (this.held.length < resumeBelow && this.controller.paused) this.controller.resume();
          return Promise.resolve({ value: chunk, done: false });
        }
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.waiting = { resolve, reject };
        });
      },
      // Leaving the loop early (a stop, the client gone) ends the answer; after [DONE] its end is read first.
      return: () => {
        if (this.drainMs === null) this.destroy();
        else this.drainThenCut(this.drainMs);
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  /** The whole body. */
  async bytes(): Promise<Buffer> {
    await this.readToEnd(Number.POSITIVE_INFINITY);
    const body = this.held.length === 1 ? (this.held[0] as Buffer) : Buffer.concat(this.held);
    this.held = [];
    return body;
  }

  async text(): Promise<string> {
    return (await this.bytes()).toString('utf8');
  }

  /**
   * Reads a short body to its end and drops it, so the connection can carry the next request; cuts
   * one longer than 128 KiB, and then rejects (callers drop that too).
   */
  async dump(): Promise<void> {
    await this.readToEnd(dumpLimitBytes);
    this.held = [];
  }

  private readToEnd(limitBytes: number): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const bytes = this.held.reduce((total, chunk) => total + chunk.length, 0);
      this.collecting = { resolve, reject, limitBytes, bytes };
      // Over the limit already: cut it without reading on (the abort rejects through fail()).
      if (bytes > limitBytes) return this.cutTooLong();
      if (this.controller.paused) this.controller.resume();
    });
  }

  private drainThenCut(waitMs: number): void {
    if (this.ended || this.failure !== null) return;
    const timer = setTimeout(() => this.destroy(), waitMs);
    timer.unref();
    this.held = [];
    this.collecting = { resolve: () => clearTimeout(timer), reject: () => clearTimeout(timer), limitBytes: dumpLimitBytes, bytes: 0 };
    if (this.controller.paused) this.controller.resume();
  }

  private cutTooLong(): void {
    this.controller.abort(new Error('the body was longer than it is read for'));
  }

  private takeWaiting(): Waiting | null {
    const waiting = this.waiting;
    this.waiting = null;
    return waiting;
  }
}
