// A settlement Redis could not take (unreachable, or its connection being re-made) is tried again,
// with growing waits, for as long as it can still apply. Only settlements that apply once are
// retried this way: each is guarded by a concurrency lease (onlyIfLeased), so a try whose answer
// was lost but which Redis ran leaves nothing for the next to apply. Those leases last 60 s from
// their last renewal; the tries come 2.5, 7.5, 17.5 and 37.5 s after the first failure, inside that.
// One that timed out is not tried again: it is still queued on a connection that is up, Redis runs
// it when it answers again, and more would only pile onto a Redis that is not answering.
import { commandTimedOut } from '../platform/redis-store.js';

export const settlementRetryDelaysMs = [2_500, 5_000, 10_000, 20_000];

/** Runs `attempt`, and again after each of the delays while it fails; `onGiveUp` hears the last failure. Resolves after the first try. */
export function settleWithRetries(attempt: () => Promise<void>, onGiveUp: (error: unknown) => void): Promise<void> {
  const tryFrom = (retry: number): Promise<void> =>
    attempt().catch((error: unknown) => {
      const delay = settlementRetryDelaysMs[retry];
      if (delay === undefined || commandTimedOut(error)) {
        onGiveUp(error);
        return;
      }
      setTimeout(() => void tryFrom(retry + 1), delay).unref();
    });
  return tryFrom(0);
}
