// POST /v1/chat/completions and /v1/completions: validate like vLLM (schema, model, context
// length — all answered as JSON before any SSE), plan the text, then run it through the scheduler.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { JsonObject } from './body-fields.js';
import { BufferedSink } from './buffered-sink.js';
import { createChatTranscript } from './chat-transcript.js';
import { createCompletionTranscript } from './completion-transcript.js';
import { preparePrompts, tokenLimits } from './context-window.js';
import { modelNotFound, queueFull } from './errors.js';
import type { SimulatorFault } from './faults.js';
import { parseGenerationRequest, type GenerationKind, type ParsedGeneration } from './generation-request.js';
import { GenerationRun } from './generation-run.js';
import { SSE_HEADERS, sendError, type ClientConnection } from './http-io.js';
import type { SimulatorRuntime } from './runtime.js';
import { StreamSink } from './stream-sink.js';
import { planChoice, type ChoicePlan } from './text-generator.js';

export interface GenerationContext {
  runtime: SimulatorRuntime;
  request: IncomingMessage;
  response: ServerResponse;
  connection: ClientConnection;
  kind: GenerationKind;
  body: JsonObject;
  fault: SimulatorFault;
}

export function handleGeneration(context: GenerationContext): void {
  const { runtime, response, kind } = context;
  const errorFormat = runtime.settings.errorFormat;
  const parsed = parseGenerationRequest(kind, context.body);
  if (!parsed.ok) return sendError(response, parsed.error, errorFormat);
  const model = runtime.models.resolve(parsed.value.model);
  if (model === null) return sendError(response, modelNotFound(parsed.value.model ?? ''), errorFormat);
  const prompts = preparePrompts(parsed.value);
  const limits = tokenLimits({ prompts, parsed: parsed.value, contextLength: model.contextLength });
  if (!limits.ok) return sendError(response, limits.error, errorFormat);

  const plans = planChoices({ parsed: parsed.value, prompts, tokenLimits: limits.tokenLimits });
  const promptTokenTotal = prompts.reduce((total, prompt) => total + prompt.tokenCount, 0);
  const identity = {
    id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${requestIdOf(context.request, parsed.value)}`,
    created: runtime.settings.created ?? Math.floor(Date.now() / 1000),
    model: model.id,
    choiceCount: parsed.value.choiceCount,
  };
  const transcript = kind === 'chat' ? createChatTranscript(identity) : createCompletionTranscript(identity);
  const sinkOptions = { response, transcript, plans, fault: context.fault, promptTokenTotal, errorFormat };
  const sink = parsed.value.stream
    ? new StreamSink({ ...sinkOptions, includeUsage: parsed.value.includeUsage, continuousUsage: parsed.value.continuousUsage })
    : new BufferedSink(sinkOptions);

  if (context.connection.gone) return;
  const run = new GenerationRun({ runtime, plans, metricsModelId: model.baseModelId, promptTokenTotal, sink });
  if (!run.start()) return sendError(response, queueFull(), errorFormat);
  context.connection.onGone(() => run.abort());
  if (parsed.value.stream) {
    // Like vLLM, the status line goes out at once; events follow once the request is scheduled.
    response.writeHead(200, SSE_HEADERS);
    response.flushHeaders();
  }
}

function planChoices(options: {
  parsed: ParsedGeneration;
  prompts: ReadonlyArray<{ text: string; tokenCount: number }>;
  tokenLimits: readonly number[];
}): ChoicePlan[] {
  const { parsed } = options;
  const plans: ChoicePlan[] = [];
  options.prompts.forEach((prompt, promptIndex) => {
    for (let choice = 0; choice < parsed.choiceCount; choice++) {
      plans.push(
        planChoice({
          index: promptIndex * parsed.choiceCount + choice,
          promptText: prompt.text,
          promptTokenCount: prompt.tokenCount,
          seed: parsed.seed,
          tokenLimit: options.tokenLimits[promptIndex] ?? 1,
          stop: parsed.stop,
          minTokens: parsed.minTokens,
          ignoreEos: parsed.ignoreEos,
        }),
      );
    }
  });
  return plans;
}

/** vLLM prefers the X-Request-Id header, then the body's `request_id`, else a random uuid hex. */
function requestIdOf(request: IncomingMessage, parsed: ParsedGeneration): string {
  const header = request.headers['x-request-id'];
  const fromHeader = Array.isArray(header) ? header[0] : header;
  if (fromHeader !== undefined && fromHeader !== '') return fromHeader;
  return parsed.requestId ?? randomUUID().replaceAll('-', '');
}
