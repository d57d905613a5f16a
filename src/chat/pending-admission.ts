// An admission that runs beside vLLM's start (limits/guard.ts), as the relay sees it: a refusal
// aborts vLLM's request the moment it comes, and the relay asks whether it came before it sends
// anything or counts a failure of its own.

export class PendingAdmission {
  private refusal: { error: unknown } | null = null;
  private readonly decided: Promise<void>;

  constructor(admission: Promise<unknown>, abort: () => void) {
    this.decided = admission.then(
      () => undefined,
      (error: unknown) => {
        this.refusal = { error };
        abort();
      },
    );
  }

  /** Once the admission is decided: its refusal (the error to answer), or null when it was granted. */
  async refused(): Promise<{ error: unknown } | null> {
    await this.decided;
    return this.refusal;
  }
}
