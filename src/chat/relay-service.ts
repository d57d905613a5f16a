// The relay: every generation request, from /v1 (and later /api/chat), goes through here. It
// applies the request policy, calls vLLM with the client's disconnect tied to the upstream
// request, answers with vLLM's bytes (JSON, or SSE through stream-relay), and records usage and
// metrics once it is over — never a database write on the way.
import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../auth/authenticate.js';
import type { ModelCatalog } from '../upstream/model-catalog.js';
import { classifyErrorResponse, classifyTransportError, UpstreamFailure } from '../upstream/upstream-failure.js';
import type { GenerationPath, VllmClient } from '../upstream/vllm-client.js';
import type { UsageRecorder } from '../usage/usage-recorder.js';
import type { UsageEvent } from '../usage/usage-repository.js';
import type { AbortReason, ChatMetrics, RequestOutcome } from './chat-metrics.js';
import { prepareUpstreamRequest, type PolicyOptions } from './request-policy.js';
import { sseHeaders } from './sse.js';
import { estimatePromptTokens, readUsage, StreamObserver, type TokenUsage } from './stream-observer.js';
import { relayStream, type StreamEnding } from './stream-relay.js';

export interface RelayTimeouts {
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  totalTimeoutMs: number;
  heartbeatMs: number;
  slowClientTimeoutMs: number;
}

export type Endpoint = 'chat.completions' | 'completions';

const paths: Record<Endpoint, GenerationPath> = { 'chat.completions': '/v1/chat/completions', completions: '/v1/completions' };

interface Accounting {
  startedAt: number;
  firstEventAt: number | null;
  lastEventAt: number | null;
}

export function createRelayService(dependencies: {
  vllm: VllmClient;
  baseUrls: string[];
  catalog: ModelCatalog;
  policy: PolicyOptions;
  timeouts: RelayTimeouts;
  metrics: ChatMetrics;
  usage: UsageRecorder;
}) {
  const { vllm, catalog, metrics, timeouts } = dependencies;
  let nextUpstream = 0;

  /** Round robin over the configured servers (model-aware routing comes with the upstream feature). */
  function pickBaseUrl(): string {
    const baseUrl = dependencies.baseUrls[nextUpstream % dependencies.baseUrls.length] ?? dependencies.baseUrls[0] ?? '';
    nextUpstream += 1;
    return baseUrl;
  }

  /** A model label for metrics: one vLLM serves, never a caller's arbitrary string. */
  function modelLabel(model: string | null): string {
    const name = model ?? catalog.defaultModel();
    return name !== null && catalog.knows(name) ? name : 'unknown';
  }

  function finish(input: {
    principal: Principal;
    endpoint: Endpoint;
    requestId: string;
    model: string | null;
    stream: boolean;
    outcome: RequestOutcome;
    finishReason: string | null;
    usage: TokenUsage | null;
    estimatedUsage: TokenUsage;
    accounting: Accounting;
  }): void {
    const label = modelLabel(input.model);
    const durationMs = Date.now() - input.accounting.startedAt;
    const usage = input.usage ?? input.estimatedUsage;
    metrics.requests.inc({ model: label, status: input.outcome });
    metrics.duration.observe({ model: label, stream: String(input.stream) }, durationMs / 1000);
    if (usage.prompt_tokens > 0) metrics.promptTokens.inc({ model: label }, usage.prompt_tokens);
    if (usage.completion_tokens > 0) metrics.completionTokens.inc({ model: label }, usage.completion_tokens);
    const ttftMs = input.accounting.firstEventAt === null ? null : input.accounting.firstEventAt - input.accounting.startedAt;
    const event: UsageEvent = {
      createdAt: new Date(input.accounting.startedAt),
      userId: input.principal.userId,
      apiKeyId: input.principal.kind === 'api_key' ? input.principal.apiKeyId : null,
      endpoint: input.endpoint,
      model: input.model ?? catalog.defaultModel() ?? 'unknown',
      stream: input.stream,
      status: input.outcome,
      finishReason: input.finishReason,
      promptTokens: usage.prompt_tokens,
      completionTokens: usage.completion_tokens,
      usageEstimated: input.usage === null,
      ttftMs,
      durationMs,
      requestId: input.requestId,
    };
    dependencies.usage.record(event);
  }

  function countFailure(failure: UpstreamFailure | null): void {
    if (failure !== null) metrics.upstreamErrors.inc({ kind: failure.kind });
  }

  async function relay(input: { request: FastifyRequest; reply: FastifyReply; principal: Principal; endpoint: Endpoint; body: Record<string, unknown> }): Promise<void> {
    const { request, reply, principal, endpoint } = input;
    const prepared = prepareUpstreamRequest({ body: input.body, principal, policy: dependencies.policy });
    const accounting: Accounting = { startedAt: Date.now(), firstEventAt: null, lastEventAt: null };
    const estimatedUsage: TokenUsage = { prompt_tokens: estimatePromptTokens(input.body), completion_tokens: 0 };

    // One controller ties the client to the upstream request: the client leaving aborts vLLM's work.
    const controller = new AbortController();
    let clientGone = false;
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) {
        clientGone = true;
        controller.abort(new Error('client disconnected'));
      }
    });
    const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(timeouts.totalTimeoutMs)]);
    const base = { principal, endpoint, requestId: request.id, stream: prepared.stream, accounting, estimatedUsage };

    function recordAbort(input: Omit<Parameters<typeof finish>[0], 'outcome'> & { reason: AbortReason }): void {
      metrics.abortedStreams.inc({ reason: input.reason });
      finish({ ...input, outcome: 'aborted' });
    }

    let upstream;
    try {
      upstream = await vllm.generate({
        baseUrl: pickBaseUrl(),
        path: paths[endpoint],
        body: prepared.upstreamBody,
        requestId: request.id,
        stream: prepared.stream,
        signal,
        headersTimeoutMs: prepared.stream ? timeouts.headersTimeoutMs : timeouts.totalTimeoutMs,
        bodyTimeoutMs: prepared.stream ? timeouts.idleTimeoutMs : timeouts.totalTimeoutMs,
      });
    } catch (error) {
      if (clientGone) {
        recordAbort({ ...base, model: prepared.model, reason: 'client_disconnect', usage: null, finishReason: null });
        return;
      }
      const failure = error instanceof UpstreamFailure ? error : classifyTransportError(error);
      countFailure(failure);
      finish({ ...base, model: prepared.model, outcome: failure.code === 'upstream_timeout' ? 'timeout' : 'upstream_error', finishReason: null, usage: null });
      throw failure;
    }

    if (upstream.statusCode !== 200) {
      const text = await upstream.body.text().catch(() => '');
      const { error, upstreamFault } = classifyErrorResponse(upstream.statusCode, text);
      if (upstreamFault !== null) metrics.upstreamErrors.inc({ kind: upstreamFault });
      finish({ ...base, model: prepared.model, outcome: upstreamFault === null ? 'client_error' : 'upstream_error', finishReason: null, usage: null });
      throw error;
    }

    if (!prepared.stream) {
      let bytes: Buffer;
      try {
        bytes = Buffer.from(await upstream.body.arrayBuffer());
      } catch (error) {
        if (clientGone) {
          recordAbort({ ...base, model: prepared.model, reason: 'client_disconnect', usage: null, finishReason: null });
          return;
        }
        const failure = classifyTransportError(signal.aborted ? signal.reason : error);
        countFailure(failure);
        finish({ ...base, model: prepared.model, outcome: failure.code === 'upstream_timeout' ? 'timeout' : 'upstream_error', finishReason: null, usage: null });
        throw failure;
      }
      const summary = summariseJson(bytes);
      finish({ ...base, model: summary.model ?? prepared.model, outcome: 'ok', finishReason: summary.finishReason, usage: summary.usage });
      // vLLM's bytes, as they came: never parsed and re-serialised on the way to the client.
      await reply.header('content-type', String(upstream.headers['content-type'] ?? 'application/json')).send(bytes);
      return;
    }

    const observer = new StreamObserver({ collectText: false });
    reply.hijack();
    metrics.activeStreams.inc();
    let ending: StreamEnding;
    try {
      ending = await relayStream({
        upstream: upstream.body,
        response: reply.raw,
        headers: { ...(reply.getHeaders() as OutgoingHttpHeaders), ...sseHeaders },
        observer,
        forwardUsageChunk: prepared.clientWantsUsage,
        heartbeatMs: timeouts.heartbeatMs,
        slowClientTimeoutMs: timeouts.slowClientTimeoutMs,
        clientGone: () => clientGone,
        abortUpstream: (reason) => controller.abort(new Error(reason)),
        onDataEvent: (arrivedAt) => {
          const label = modelLabel(observer.model ?? prepared.model);
          if (accounting.firstEventAt === null) {
            accounting.firstEventAt = arrivedAt;
            metrics.timeToFirstToken.observe({ model: label }, (arrivedAt - accounting.startedAt) / 1000);
          } else if (accounting.lastEventAt !== null) {
            metrics.interTokenLatency.observe({ model: label }, (arrivedAt - accounting.lastEventAt) / 1000);
          }
          accounting.lastEventAt = arrivedAt;
        },
      });
    } finally {
      metrics.activeStreams.dec();
    }

    const streamed = { ...base, model: observer.model ?? prepared.model, finishReason: observer.finishReason };
    const estimate = { prompt_tokens: estimatedUsage.prompt_tokens, completion_tokens: observer.outputEvents };
    switch (ending.outcome) {
      case 'complete':
        finish({ ...streamed, outcome: 'ok', usage: observer.usage, estimatedUsage: estimate });
        return;
      case 'upstream_error_event':
        finish({ ...streamed, outcome: 'upstream_error', usage: observer.usage, estimatedUsage: estimate });
        return;
      case 'client_disconnect':
      case 'slow_client':
        recordAbort({ ...streamed, estimatedUsage: estimate, reason: ending.outcome, usage: observer.usage });
        return;
      case 'upstream_failure': {
        countFailure(ending.failure);
        const reason: AbortReason = ending.failure.kind === 'malformed' ? 'malformed_upstream' : ending.failure.code === 'upstream_timeout' ? 'timeout' : 'upstream_cut';
        metrics.abortedStreams.inc({ reason });
        finish({ ...streamed, outcome: ending.failure.code === 'upstream_timeout' ? 'timeout' : 'upstream_error', usage: observer.usage, estimatedUsage: estimate });
        return;
      }
    }
  }

  return { relay };
}

export type RelayService = ReturnType<typeof createRelayService>;

/** Usage, model and finish reason of a non-streaming answer, read on the side. */
function summariseJson(bytes: Buffer): { usage: TokenUsage | null; model: string | null; finishReason: string | null } {
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as { usage?: unknown; model?: unknown; choices?: Array<{ finish_reason?: unknown }> };
    const finishReason = parsed.choices?.[0]?.finish_reason;
    return { usage: readUsage(parsed.usage), model: typeof parsed.model === 'string' ? parsed.model : null, finishReason: typeof finishReason === 'string' ? finishReason : null };
  } catch {
    return { usage: null, model: null, finishReason: null };
  }
}
