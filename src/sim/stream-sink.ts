// Writes a generation as vLLM's SSE stream (`data: <json>\n\n` per event, `data: [DONE]` last),
// one write per chunk with backpressure, and plays the chunk-counting faults.
import type { ServerResponse } from 'node:http';
import { renderStreamingError, simulatedGenerationFailure } from './errors.js';
import { dueFault, type SimulatorFault } from './faults.js';
import type { GenerationSink, TokenEvent } from './generation-run.js';
import { cutConnection } from './http-io.js';
import type { ErrorFormat } from './options.js';
import type { ChoicePlan } from './text-generator.js';
import type { Transcript, UsageCounts } from './transcript.js';

export interface StreamSinkOptions {
  response: ServerResponse;
  transcript: Transcript;
  plans: readonly ChoicePlan[];
  fault: SimulatorFault;
  includeUsage: boolean;
  continuousUsage: boolean;
  promptTokenTotal: number;
  errorFormat: ErrorFormat;
}

const DONE_EVENT = 'data: [DONE]\n\n';
export const MALFORMED_EVENT = 'data: {"id": oops\n\n';

export class StreamSink implements GenerationSink {
  /** The response is over (completed or ended by a fault). */
  private ended = false;
  /** A fault or an error ended it. */
  private faulted = false;
  private sentChunks = 0;
  private malformedSent = false;

  constructor(private readonly options: StreamSinkOptions) {}

  get failed(): boolean {
    return this.faulted;
  }

  onFirstStep(): Promise<void> | undefined {
    const usage = this.options.continuousUsage ? { promptTokens: this.options.promptTokenTotal, completionTokens: 0 } : null;
    let pending: Promise<void> | undefined;
    for (const chunk of this.options.transcript.openingChunks(usage)) pending = this.send(chunk) ?? pending;
    return pending;
  }

  onToken(event: TokenEvent): Promise<void> | undefined {
    const { plan, tokenIndex, isLast } = event;
    return this.send(
      this.options.transcript.tokenChunk({
        choiceIndex: plan.index,
        text: plan.tokenTexts[tokenIndex] ?? '',
        finish: isLast ? { reason: plan.finishReason, stopReason: plan.stopReason } : null,
        usage: this.options.continuousUsage ? { promptTokens: plan.promptTokenCount, completionTokens: tokenIndex + 1 } : null,
      }),
    );
  }

  onComplete(): void {
    if (this.options.includeUsage) void this.send(this.options.transcript.usageChunk(this.totalUsage()));
    if (this.ended || this.applyFault(true)) return;
    this.ended = true;
    this.endAfter(DONE_EVENT);
  }

  onError(): void {
    this.endWithError();
  }

  private send(json: string): Promise<void> | undefined {
    if (this.ended || this.applyFault(false)) return undefined;
    this.sentChunks++;
    if (this.options.response.write(`data: ${json}\n\n`)) return undefined;
    return waitForDrain(this.options.response);
  }

  /** Plays the fault due now; true when it ended the stream. `atEnd`: counts beyond the stream apply here. */
  private applyFault(atEnd: boolean): boolean {
    const { fault, response } = this.options;
    // A malformed event already sent does not count again: the stream carries on after it.
    const due = dueFault(this.malformedSent ? { ...fault, malformed_after_chunks: undefined } : fault, this.sentChunks, atEnd);
    if (due === 'cut') {
      this.ended = true;
      this.faulted = true;
      cutConnection(response);
      return true;
    }
    if (due === 'error') {
      this.endWithError();
      return true;
    }
    if (due === 'malformed') {
      this.malformedSent = true;
      response.write(MALFORMED_EVENT);
    }
    return false;
  }

  /** vLLM keeps status 200 and reports a failure as an event, followed by `[DONE]`. */
  private endWithError(): void {
    if (this.ended) return;
    this.ended = true;
    this.faulted = true;
    const error = renderStreamingError(simulatedGenerationFailure(this.sentChunks), this.options.errorFormat);
    this.endAfter(`data: ${error}\n\n${DONE_EVENT}`);
  }

  /**
   * Writes the last events, then ends the body a turn later: vLLM's server (uvicorn) sends the
   * chunked body's terminator in a write of its own after `[DONE]`, so a client can read `[DONE]`
   * before the body has ended.
   */
  private endAfter(lastEvents: string): void {
    const { response } = this.options;
    response.write(lastEvents);
    setImmediate(() => {
      if (!response.destroyed) response.end();
    });
  }

  private totalUsage(): UsageCounts {
    const completionTokens = this.options.plans.reduce((total, plan) => total + plan.tokenTexts.length, 0);
    return { promptTokens: this.options.promptTokenTotal, completionTokens };
  }
}

function waitForDrain(response: ServerResponse): Promise<void> | undefined {
  if (response.destroyed) return undefined;
  return new Promise((resolve) => {
    const done = (): void => {
      response.off('drain', done);
      response.off('close', done);
      resolve();
    };
    response.on('drain', done);
    response.on('close', done);
  });
}
