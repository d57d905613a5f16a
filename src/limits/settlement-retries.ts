// A settlement Redis could not take (unreachable, or its connection being re-made) is tried again,
// with growing waits, for as long as it can still apply. Only settlements that apply once are
// retried this way: each is guarded by a concurrency lease (onlyIfLeased), so a try whose answer
// was lost but which Redis ran leaves nothing for the next to apply. Those leases last 60 s from
// their last renewal; the tries end 37.5 s after the first failure, well inside that.
export const settlementRetryDelaysMs = [2_500, 5_000, 10_000, 20_000];

/** Runs `attempt`, and again after each of the delays while it fails; `onGiveUp` hears the last failure. Resolves after the first try. */
export function settleWithRetries(attempt: () => Promise<void>, onGiveUp: (error: unknown) => void): Promise<void> {
  const tryFrom = (retry: number): Promise<void> =>
    attempt().catch((error: unknown) => {
      const delay = settlementRetryDelaysMs[retry];
      if (delay === undefined) {
        onGiveUp(error);
        return;
      }
      setTimeout(() => void tryFrom(retry + 1), delay).unref();
    });
  return tryFrom(0);
}
