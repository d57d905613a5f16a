// Drives one generation request through the waiting queue, prefill (time to first token) and the
// decode steps, so streaming and non-streaming answers share timing, metrics and abort handling.
import type { FinishedReason } from './metrics.js';
import { Pacer, withJitter } from './pacer.js';
import type { SimulatorRuntime } from './runtime.js';
import type { SchedulerTicket } from './scheduler.js';
import type { ChoicePlan } from './text-generator.js';

export interface TokenEvent {
  plan: ChoicePlan;
  tokenIndex: number;
  isLast: boolean;
}

/** Where the tokens go: an SSE stream or a buffered JSON body. A returned promise means "wait for drain". */
export interface GenerationSink {
  /** True once the sink gave up on the response (a fault ended it): generation stops, counted as an error. */
  readonly failed: boolean;
  onFirstStep(): Promise<void> | undefined;
  onToken(event: TokenEvent): Promise<void> | undefined;
  onComplete(): void;
  onError(): void;
}

export interface GenerationRunOptions {
  runtime: SimulatorRuntime;
  plans: readonly ChoicePlan[];
  /** Metrics are labelled with the base model, also for LoRA requests. */
  metricsModelId: string;
  promptTokenTotal: number;
  sink: GenerationSink;
}

type Phase = 'created' | 'waiting' | 'running' | 'finished';

export class GenerationRun {
  private phase: Phase = 'created';
  private readonly pacer = new Pacer();
  private ticket: SchedulerTicket | null = null;
  private readonly arrivedAt = performance.now();

  constructor(private readonly options: GenerationRunOptions) {}

  /** Queues the request; false when the queue is full (the caller answers 503). */
  start(): boolean {
    const ticket = this.options.runtime.scheduler.submit(this.onGranted);
    if (ticket === null) return false;
    this.ticket = ticket;
    if (this.phase === 'created') {
      this.phase = 'waiting';
      this.options.runtime.metrics.adjustWaiting(this.options.metricsModelId, 1);
      this.options.runtime.onActivity();
    }
    return true;
  }

  /** The client went away: stop at once, free the slot, count `abort`. */
  abort(): void {
    this.finish('abort');
  }

  private readonly onGranted = (): void => {
    const { runtime, metricsModelId } = this.options;
    if (this.phase === 'waiting') runtime.metrics.adjustWaiting(metricsModelId, -1);
    this.phase = 'running';
    runtime.metrics.adjustRunning(metricsModelId, 1);
    runtime.metrics.observe(metricsModelId, 'queueTime', (performance.now() - this.arrivedAt) / 1000);
    runtime.metrics.countPromptTokens(metricsModelId, this.options.promptTokenTotal);
    runtime.onActivity();
    void this.generate();
  };

  private async generate(): Promise<void> {
    const { runtime, plans, sink, metricsModelId } = this.options;
    const settings = runtime.settings;
    try {
      if (!(await this.pacer.wait(withJitter(settings.timeToFirstTokenMs, settings.jitterRatio)))) return;
      let lastStepAt = performance.now();
      runtime.metrics.observe(metricsModelId, 'timeToFirstToken', (lastStepAt - this.arrivedAt) / 1000);
      const opening = sink.onFirstStep();
      if (opening !== undefined) await opening;
      if (this.stopIfOver()) return;
      const stepCount = plans.reduce((longest, plan) => Math.max(longest, plan.tokenTexts.length), 0);
      for (let step = 0; step < stepCount; step++) {
        if (step > 0) {
          if (!(await this.pacer.wait(withJitter(settings.interTokenMs, settings.jitterRatio)))) return;
          const now = performance.now();
          runtime.metrics.observe(metricsModelId, 'interTokenLatency', (now - lastStepAt) / 1000);
          lastStepAt = now;
        }
        // One engine step yields one token per unfinished choice, so choices interleave.
        for (const plan of plans) {
          if (step >= plan.tokenTexts.length) continue;
          runtime.metrics.countGenerationTokens(metricsModelId, 1);
          const pending = sink.onToken({ plan, tokenIndex: step, isLast: step === plan.tokenTexts.length - 1 });
          if (pending !== undefined) await pending;
          if (this.stopIfOver()) return;
        }
      }
      sink.onComplete();
      this.finish(sink.failed ? 'error' : finishedReasonOf(plans));
    } catch (error) {
      console.error('simulator: generation failed', error);
      if (this.phase !== 'finished') sink.onError();
      this.finish('error');
    }
  }

  /** True when generation must stop: aborted meanwhile, or the sink ended the response. */
  private stopIfOver(): boolean {
    if (this.phase === 'finished') return true;
    if (!this.options.sink.failed) return false;
    this.finish('error');
    return true;
  }

  private finish(reason: FinishedReason): void {
    if (this.phase === 'finished') return;
    const { runtime, metricsModelId } = this.options;
    const previous = this.phase;
    this.phase = 'finished';
    this.pacer.cancel();
    this.ticket?.cancel();
    if (previous === 'waiting') runtime.metrics.adjustWaiting(metricsModelId, -1);
    if (previous === 'running') runtime.metrics.adjustRunning(metricsModelId, -1);
    runtime.metrics.countFinished(metricsModelId, reason);
    runtime.metrics.observe(metricsModelId, 'endToEndLatency', (performance.now() - this.arrivedAt) / 1000);
    runtime.finished[reason]++;
    runtime.onActivity();
  }
}

function finishedReasonOf(plans: readonly ChoicePlan[]): FinishedReason {
  return plans.some((plan) => plan.finishReason === 'length') ? 'length' : 'stop';
}
