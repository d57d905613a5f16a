// The relay: every generation request, from /v1 and from /api/chat, goes through here. It applies
// the request policy, calls vLLM with the client's disconnect (and any stop) tied to the upstream
// request, answers with vLLM's bytes (JSON, or SSE through stream-relay), and records usage and
// metrics once it is over — never a database write on the way.
import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../auth/authenticate.js';
import { GatewayError } from '../errors.js';
import { answeredStatus } from '../platform/error-handler.js';
import type { ModelCatalog } from '../upstream/model-catalog.js';
import { classifyErrorResponse, classifyTransportError, UpstreamFailure } from '../upstream/upstream-failure.js';
import type { GenerationPath, UpstreamResponse, VllmClient } from '../upstream/vllm-client.js';
import type { UpstreamLease, UpstreamRouter } from '../upstream/upstream-router.js';
import type { UsageRecorder } from '../usage/usage-recorder.js';
import type { AbortReason, ChatMetrics, RequestOutcome } from './chat-metrics.js';
import { prepareUpstreamRequest, type PolicyOptions } from './request-policy.js';
import { sseHeaders } from './sse.js';
import { estimatePromptTokens, readUsage, StreamObserver, type TokenUsage } from './stream-observer.js';
import { firstFinishReason, firstMessageContent, parseJsonObject } from './completion-fields.js';
import { relayStream, type StopReason, type StreamEnding } from './stream-relay.js';

export interface RelayTimeouts {
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  totalTimeoutMs: number;
  heartbeatMs: number;
  slowClientTimeoutMs: number;
}

export type Endpoint = 'chat.completions' | 'completions';

const paths: Record<Endpoint, GenerationPath> = { 'chat.completions': '/v1/chat/completions', completions: '/v1/completions' };

/** How a relayed request ended, for callers that store the turn (the chat API). */
export interface RelayResult {
  outcome: RequestOutcome;
  abortReason: AbortReason | null;
  /** The text of choice 0, when collectText was asked for. */
  text: string;
  finishReason: string | null;
  usage: TokenUsage;
  usageEstimated: boolean;
  ttftMs: number | null;
  durationMs: number;
  model: string | null;
  /** What went wrong after the answer started, if anything. */
  error: GatewayError | null;
}

export interface RelayInput {
  request: FastifyRequest;
  reply: FastifyReply;
  principal: Principal;
  endpoint: Endpoint;
  body: Record<string, unknown>;
  /** Keep the generated text (choice 0) in the result. */
  collectText?: boolean;
  /** Events to send before vLLM's on a stream. */
  leadingEvents?: Buffer[];
  /** Ends the generation from outside: a stop request, or shutdown. */
  stop?: { signal: AbortSignal; reason: () => StopReason };
  /** For non-streaming answers: the JSON to send instead of vLLM's bytes (the chat API adds its ids). */
  rewriteJson?: (completion: Record<string, unknown>) => Record<string, unknown>;
  /** Runs once a generation is over but before the client is told (JSON sent, `[DONE]` written). */
  beforeFinish?: (result: RelayResult) => Promise<void>;
  /** Keeps requests with the same key (a conversation) on the same server, for vLLM's prefix cache. */
  affinityKey?: string | null;
  /**
   * Work done while vLLM starts (the chat API writing its turn), settled before the first byte of
   * the answer. If it fails, the generation is abandoned unanswered and the failure is the reply.
   */
  ready?: Promise<unknown>;
}

/** A reset sooner than this after the request went out counts as "at once" (see the retry). */
const resetAtOnceMs = 1000;

/** vLLM's own failures that another replica may not share: retried once, before any byte was sent. */
const retryableStatuses = new Set([502, 503, 504]);

export function createRelayService(dependencies: {
  vllm: VllmClient;
  router: UpstreamRouter;
  catalog: ModelCatalog;
  policy: PolicyOptions;
  timeouts: RelayTimeouts;
  metrics: ChatMetrics;
  usage: UsageRecorder;
}) {
  const { vllm, router, catalog, metrics, timeouts } = dependencies;

  /** A model label for metrics: one vLLM serves, never a caller's arbitrary string. */
  function modelLabel(model: string | null): string {
    const name = model ?? catalog.defaultModel();
    return name !== null && catalog.knows(name) ? name : 'unknown';
  }

  async function relay(input: RelayInput): Promise<RelayResult> {
    const { request, reply, principal, endpoint } = input;
    const requestedModel = typeof input.body.model === 'string' ? input.body.model : null;
    const model = router.resolveModel(requestedModel);
    const body = model === requestedModel ? input.body : { ...input.body, model };
    const prepared = prepareUpstreamRequest({ body, principal, policy: dependencies.policy });
    let lease: UpstreamLease | null = null;
    const startedAt = Date.now();
    let firstEventAt: number | null = null;
    let lastEventAt: number | null = null;
    const observer = new StreamObserver({ collectText: input.collectText === true });

    // One controller ties the client (and a stop) to the upstream request: vLLM frees the slot at once.
    const controller = new AbortController();
    let clientGone = false;
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) {
        clientGone = true;
        controller.abort(new Error('client disconnected'));
      }
    });
    const onStop = () => controller.abort(new Error('generation stopped'));
    input.stop?.signal.addEventListener('abort', onStop, { once: true });
    // The total timeout aborts the same controller (one timer, cleared when the request concludes),
    // with the reason AbortSignal.timeout would give, so failures classify it as a timeout.
    const totalTimer = setTimeout(() => controller.abort(new DOMException('The total timeout ran out', 'TimeoutError')), timeouts.totalTimeoutMs);
    totalTimer.unref();
    const signal = controller.signal;

    const conclude = (ending: { outcome: RequestOutcome; abortReason?: AbortReason | null; error?: GatewayError | null; usage?: TokenUsage | null; finishReason?: string | null }): RelayResult => {
      clearTimeout(totalTimer);
      input.stop?.signal.removeEventListener('abort', onStop);
      // The server's health learns from its own failures only: a client's error or departure says nothing about it.
      lease?.release(ending.outcome === 'ok' ? 'success' : ending.outcome === 'upstream_error' || ending.outcome === 'timeout' ? 'failure' : 'neutral');
      const model = observer.model ?? prepared.model;
      const label = modelLabel(model);
      const durationMs = Date.now() - startedAt;
      const reported = ending.usage ?? observer.usage;
      const usage = reported ?? { prompt_tokens: estimatePromptTokens(input.body), completion_tokens: observer.outputEvents };
      const ttftMs = firstEventAt === null ? null : firstEventAt - startedAt;
      metrics.requests.inc({ model: label, status: ending.outcome });
      metrics.duration.observe({ model: label, stream: String(prepared.stream) }, durationMs / 1000);
      if (usage.prompt_tokens > 0) metrics.promptTokens.inc({ model: label }, usage.prompt_tokens);
      if (usage.completion_tokens > 0) metrics.completionTokens.inc({ model: label }, usage.completion_tokens);
      if (ending.abortReason != null) metrics.abortedStreams.inc({ reason: ending.abortReason });
      const finishReason = ending.finishReason ?? observer.finishReason;
      dependencies.usage.record({
        createdAt: new Date(startedAt),
        userId: principal.userId,
        apiKeyId: principal.kind === 'api_key' ? principal.apiKeyId : null,
        endpoint,
        model: model ?? catalog.defaultModel() ?? 'unknown',
        stream: prepared.stream,
        status: ending.outcome,
        finishReason,
        promptTokens: usage.prompt_tokens,
        completionTokens: usage.completion_tokens,
        usageEstimated: reported === null,
        ttftMs,
        durationMs,
        requestId: request.id,
      });
      return {
        outcome: ending.outcome,
        abortReason: ending.abortReason ?? null,
        text: observer.text,
        finishReason,
        usage,
        usageEstimated: reported === null,
        ttftMs,
        durationMs,
        model,
        error: ending.error ?? null,
      };
    };

    /** Ended early from our side: the client left, or a stop. Nothing more is sent to vLLM or the client. */
    const endedByUs = (): RelayResult | null => {
      if (clientGone) return conclude({ outcome: 'aborted', abortReason: 'client_disconnect' });
      if (input.stop?.signal.aborted === true) return conclude({ outcome: 'aborted', abortReason: input.stop.reason() === 'shutdown' ? 'shutdown' : 'stopped' });
      return null;
    };

    let lastFailure: GatewayError | null = null;

    /** A failure before any byte reached the client: recorded, then thrown for the error handler. */
    const failEarly = (error: unknown, alreadyCounted = false): never => {
      if (error instanceof GatewayError && !(error instanceof UpstreamFailure)) {
        conclude({ outcome: 'upstream_error', error });
        throw error;
      }
      const failure = error instanceof UpstreamFailure ? error : classifyTransportError(signal.aborted ? signal.reason : error);
      if (!alreadyCounted) metrics.upstreamErrors.inc({ kind: failure.kind });
      conclude({ outcome: failure.code === 'upstream_timeout' ? 'timeout' : 'upstream_error', error: failure });
      throw failure;
    };

    // One retry on another replica when a server fails before answering: nothing reached the client yet.
    let upstream: UpstreamResponse | null = null;
    const tried = new Set<string>();
    // A reset at once, before any answer, is most likely a kept-alive connection vLLM was closing as
    // the request went out on it; then the same server is tried again when no other can take it. A
    // later one may have cut a generation under way (a JSON answer's headers come at its end):
    // that one goes to another server only, never run twice on the same.
    let resetAtOnce = false;
    for (let attempt = 0; upstream === null; attempt += 1) {
      let current: UpstreamLease;
      try {
        current = await router.acquire({ model, affinityKey: input.affinityKey ?? null, exclude: tried, triedAgainIfAlone: resetAtOnce, signal });
        lease = current;
      } catch (error) {
        const ended = endedByUs();
        if (ended !== null) return stoppedBeforeAnswer(ended);
        // No server for the retry: the first attempt's failure (counted when it happened) is the answer.
        if (attempt > 0 && lastFailure !== null) return failEarly(lastFailure, true);
        // Not a refusal of the router: the total timeout ran out while queued.
        if (!(error instanceof GatewayError)) return failEarly(error);
        conclude({ outcome: 'upstream_error', error });
        throw error;
      }
      tried.add(current.upstream.name);
      const sentAt = performance.now();
      try {
        const response = await vllm.generate({
          baseUrl: current.upstream.url,
          apiKey: current.upstream.apiKey,
          path: paths[endpoint],
          body: prepared.upstreamBody,
          requestId: request.id,
          stream: prepared.stream,
          signal,
          headersTimeoutMs: prepared.stream ? timeouts.headersTimeoutMs : timeouts.totalTimeoutMs,
          bodyTimeoutMs: prepared.stream ? timeouts.idleTimeoutMs : timeouts.totalTimeoutMs,
        });
        if (attempt === 0 && retryableStatuses.has(response.statusCode)) {
          await response.body.dump().catch(() => undefined);
          metrics.upstreamErrors.inc({ kind: 'http_5xx' });
          lastFailure = classifyErrorResponse(response.statusCode, '').error;
          current.release('failure');
          lease = null;
          continue;
        }
        upstream = response;
      } catch (error) {
        const ended = endedByUs();
        if (ended !== null) return stoppedBeforeAnswer(ended);
        const failure = error instanceof UpstreamFailure ? error : classifyTransportError(signal.aborted ? signal.reason : error);
        if (attempt === 0 && (failure.kind === 'connect' || failure.kind === 'reset')) {
          metrics.upstreamErrors.inc({ kind: failure.kind });
          lastFailure = failure;
          resetAtOnce = failure.kind === 'reset' && performance.now() - sentAt < resetAtOnceMs;
          current.release('failure');
          lease = null;
          continue;
        }
        return failEarly(failure);
      }
    }

    if (input.ready !== undefined) {
      // A body that fails while we wait (the client left, vLLM cut it) keeps its failure for
      // whoever reads it next.
      try {
        await input.ready;
      } catch (error) {
        // Read to the end or cut by the abort: either way nothing of it reaches the client.
        void upstream.body.dump().catch(() => undefined);
        controller.abort(new Error('the answer could not be prepared'));
        // What the client is told is its own fault (a 4xx, such as U+0000 that PostgreSQL refused) is
        // a client error; anything else cut a generation we had started.
        if (answeredStatus(error) < 500) conclude({ outcome: 'client_error' });
        else conclude({ outcome: 'aborted', abortReason: 'not_stored' });
        throw error;
      }
    }

    if (upstream.statusCode !== 200) {
      const text = await upstream.body.text().catch(() => '');
      const { error, upstreamFault } = classifyErrorResponse(upstream.statusCode, text);
      if (upstreamFault !== null) metrics.upstreamErrors.inc({ kind: upstreamFault });
      conclude({ outcome: upstreamFault === null ? 'client_error' : 'upstream_error', error });
      throw error;
    }

    if (!prepared.stream) {
      let bytes: Buffer;
      try {
        bytes = await upstream.body.bytes();
      } catch (error) {
        const ended = endedByUs();
        if (ended !== null) return stoppedBeforeAnswer(ended);
        return failEarly(error);
      }
      const completion = parseJsonObject(bytes);
      if (completion === null) {
        // A truncated or garbled answer is vLLM's failure; the client gets a clear 502, not broken JSON.
        const failure = new UpstreamFailure('malformed', new GatewayError('upstream_error', 'vLLM sent a malformed answer'));
        metrics.upstreamErrors.inc({ kind: failure.kind });
        conclude({ outcome: 'upstream_error', error: failure });
        throw failure;
      }
      const result = conclude({
        outcome: 'ok',
        usage: readUsage(completion?.usage),
        finishReason: firstFinishReason(completion),
      });
      if (typeof completion.model === 'string') result.model = completion.model;
      if (input.collectText === true) result.text = firstMessageContent(completion);
      await input.beforeFinish?.(result);
      const contentType = String(upstream.headers['content-type'] ?? 'application/json');
      if (input.rewriteJson !== undefined) await reply.type('application/json').send(input.rewriteJson(completion));
      // vLLM's bytes, as they came: never parsed and re-serialised on the way to a /v1 client.
      else await reply.header('content-type', contentType).send(bytes);
      return result;
    }

    reply.hijack();
    metrics.activeStreams.inc();
    let ending: StreamEnding;
    let finishedResult: RelayResult | null = null;
    let streamLabels = { model: 'unknown' };
    try {
      ending = await relayStream({
        upstream: upstream.body,
        response: reply.raw,
        headers: { ...(reply.getHeaders() as OutgoingHttpHeaders), ...sseHeaders },
        observer,
        forwardUsageChunk: prepared.clientWantsUsage,
        heartbeatMs: timeouts.heartbeatMs,
        slowClientTimeoutMs: timeouts.slowClientTimeoutMs,
        ...(input.leadingEvents === undefined ? {} : { leadingEvents: input.leadingEvents }),
        clientGone: () => clientGone,
        stopRequested: () => (input.stop?.signal.aborted === true ? input.stop.reason() : null),
        abortUpstream: (reason) => controller.abort(new Error(reason)),
        beforeDone: async () => {
          finishedResult =
            observer.upstreamError === null
              ? conclude({ outcome: 'ok' })
              : conclude({ outcome: 'upstream_error', error: new GatewayError('upstream_error', observer.upstreamError.message) });
          await input.beforeFinish?.(finishedResult);
        },
        onDataEvent: (arrivedAt) => {
          if (firstEventAt === null) {
            firstEventAt = arrivedAt;
            // The label is settled once, at the first event (which names the model), not per chunk.
            streamLabels = { model: modelLabel(observer.model ?? prepared.model) };
            metrics.timeToFirstToken.observe(streamLabels, (arrivedAt - startedAt) / 1000);
          } else if (lastEventAt !== null) {
            metrics.interTokenLatency.observe(streamLabels, (arrivedAt - lastEventAt) / 1000);
          }
          lastEventAt = arrivedAt;
        },
      });
    } finally {
      clearTimeout(totalTimer);
      metrics.activeStreams.dec();
      request.server.recordHijackedRequest(request, reply);
    }

    switch (ending.outcome) {
      case 'complete':
      case 'upstream_error_event':
        return finishedResult ?? conclude({ outcome: ending.outcome === 'complete' ? 'ok' : 'upstream_error' });
      case 'client_disconnect':
      case 'slow_client':
        return conclude({ outcome: 'aborted', abortReason: ending.outcome });
      case 'stopped':
        return conclude({ outcome: 'aborted', abortReason: ending.reason === 'shutdown' ? 'shutdown' : 'stopped' });
      case 'upstream_failure': {
        metrics.upstreamErrors.inc({ kind: ending.failure.kind });
        const timedOut = ending.failure.code === 'upstream_timeout';
        return conclude({
          outcome: timedOut ? 'timeout' : 'upstream_error',
          abortReason: ending.failure.kind === 'malformed' ? 'malformed_upstream' : timedOut ? 'timeout' : 'upstream_cut',
          error: ending.failure,
        });
      }
    }

    /** Stopped or left before vLLM answered: a stopping client is told; a departed one needs nothing. */
    function stoppedBeforeAnswer(result: RelayResult): RelayResult {
      if (result.abortReason === 'stopped' || result.abortReason === 'shutdown') throw new GenerationStopped(result);
      return result;
    }
  }

  return { relay };
}

export type RelayService = ReturnType<typeof createRelayService>;

/** A JSON request stopped (or cut by shutdown) before vLLM answered; carries what it cost so far. */
export class GenerationStopped extends GatewayError {
  constructor(readonly result: RelayResult) {
    super(
      result.abortReason === 'shutdown' ? 'service_unavailable' : 'generation_stopped',
      result.abortReason === 'shutdown' ? 'The gateway is shutting down' : 'The generation was stopped',
    );
  }
}
