// Answers a non-streaming generation with one JSON body once every choice has finished, and plays
// the token-counting faults (cut the socket, a 500, or a truncated body).
import type { ServerResponse } from 'node:http';
import { simulatedGenerationFailure } from './errors.js';
import { dueFault, type SimulatorFault } from './faults.js';
import type { GenerationSink } from './generation-run.js';
import { cutConnection, sendError, sendJson } from './http-io.js';
import type { ErrorFormat } from './options.js';
import type { ChoicePlan } from './text-generator.js';
import type { Transcript } from './transcript.js';

export interface BufferedSinkOptions {
  response: ServerResponse;
  transcript: Transcript;
  plans: readonly ChoicePlan[];
  fault: SimulatorFault;
  promptTokenTotal: number;
  errorFormat: ErrorFormat;
}

export const MALFORMED_BODY = '{"id": oops';

export class BufferedSink implements GenerationSink {
  /** The response is over (completed or ended by a fault). */
  private ended = false;
  /** A fault or an error ended it. */
  private faulted = false;
  private generatedTokens = 0;

  constructor(private readonly options: BufferedSinkOptions) {}

  get failed(): boolean {
    return this.faulted;
  }

  onFirstStep(): undefined {
    return undefined;
  }

  onToken(): undefined {
    if (!this.applyFault(false)) this.generatedTokens++;
    return undefined;
  }

  onComplete(): void {
    if (this.ended || this.applyFault(true)) return;
    this.ended = true;
    const completionTokens = this.options.plans.reduce((total, plan) => total + plan.tokenTexts.length, 0);
    const usage = { promptTokens: this.options.promptTokenTotal, completionTokens };
    sendJson(this.options.response, 200, this.options.transcript.response(this.options.plans, usage));
  }

  onError(): void {
    if (this.ended) return;
    this.ended = true;
    this.faulted = true;
    sendError(this.options.response, simulatedGenerationFailure(this.generatedTokens), this.options.errorFormat);
  }

  /** Plays the fault due after `generatedTokens` tokens; true when it ended the response. */
  private applyFault(atEnd: boolean): boolean {
    if (this.ended) return true;
    const { fault, response } = this.options;
    const due = dueFault(fault, this.generatedTokens, atEnd);
    if (due === 'cut') {
      this.ended = true;
      this.faulted = true;
      cutConnection(response);
      return true;
    }
    if (due === 'error') {
      this.onError();
      return true;
    }
    if (due === 'malformed') {
      // Without a stream to carry on, a malformed answer is a 200 whose JSON body is cut short.
      this.ended = true;
      this.faulted = true;
      sendJson(response, 200, MALFORMED_BODY);
      return true;
    }
    return false;
  }
}
