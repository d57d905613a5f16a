// The models vLLM serves, from each upstream's /v1/models, cached briefly. Concurrent callers share
// one fetch; a failed refresh serves the last good list rather than failing every request.
import { GatewayError } from '../errors.js';
import type { VllmClient } from './vllm-client.js';
import { classifyErrorResponse } from './upstream-failure.js';
import type { UpstreamRouter } from './upstream-router.js';
import type { UpstreamState } from './upstream-state.js';

export interface ModelCard {
  id: string;
  object: string;
  max_model_len?: number | null;
  parent?: string | null;
  [field: string]: unknown;
}

export interface ModelList {
  object: 'list';
  data: ModelCard[];
}

export function createModelCatalog(options: { vllm: VllmClient; router: UpstreamRouter; ttlMs: number; timeoutMs: number }) {
  // The list as served, and its cards by id: lookups happen on every request, scans need not.
  let cached: { list: ModelList; byId: Map<string, ModelCard>; fetchedAt: number } | null = null;
  let inFlight: Promise<ModelList> | null = null;

  async function fetchAll(): Promise<ModelList> {
    const upstreams = options.router.upstreams();
    const results = await Promise.allSettled(upstreams.map((upstream) => fetchOne(upstream)));
    const seen = new Set<string>();
    const data: ModelCard[] = [];
    for (const result of results) {
      if (result.status !== 'fulfilled') continue;
      for (const card of result.value) {
        // Each model once, whichever server serves it.
        if (seen.has(card.id)) continue;
        seen.add(card.id);
        data.push(card);
      }
    }
    const firstFailure = results.find((result) => result.status === 'rejected');
    if (data.length === 0 && firstFailure !== undefined) throw firstFailure.reason;
    // Aliases are listed as models of their own, pointing at the model they stand for.
    for (const [alias, target] of Object.entries(options.router.aliases())) {
      const card = data.find((candidate) => candidate.id === target);
      if (card !== undefined && !seen.has(alias)) {
        seen.add(alias);
        data.push({ ...card, id: alias, root: target });
      }
    }
    return { object: 'list', data };
  }

  /** One server's models; they also tell the router which requests it can take. */
  async function fetchOne(upstream: UpstreamState): Promise<ModelCard[]> {
    const response = await options.vllm.get({ url: `${upstream.definition.url}/v1/models`, apiKey: upstream.definition.apiKey, timeoutMs: options.timeoutMs });
    if (response.statusCode !== 200) throw classifyErrorResponse(response.statusCode, response.text).error;
    const parsed = JSON.parse(response.text) as { data?: unknown };
    if (!Array.isArray(parsed.data)) throw new GatewayError('upstream_error', 'vLLM sent a model list without data');
    const cards = parsed.data.filter((card): card is ModelCard => typeof card === 'object' && card !== null && typeof (card as { id?: unknown }).id === 'string');
    upstream.discoveredModels = cards.map((card) => card.id);
    return cards;
  }

  return {
    async list(): Promise<ModelList> {
      if (cached !== null && Date.now() - cached.fetchedAt < options.ttlMs) return cached.list;
      inFlight ??= fetchAll()
        .then((list) => {
          cached = { list, byId: new Map(list.data.map((card) => [card.id, card])), fetchedAt: Date.now() };
          return list;
        })
        .finally(() => {
          inFlight = null;
        });
      try {
        return await inFlight;
      } catch (error) {
        if (cached !== null) return cached.list;
        throw error;
      }
    },

    /** Whether a model is known, from the cache only: never a request on the hot path. */
    knows(modelId: string): boolean {
      return cached?.byId.has(modelId) ?? false;
    },

    /** Forgets the cached list (the set of servers changed). */
    invalidate(): void {
      cached = null;
    },

    /** A model's card from the cache (max_model_len is what a context check needs). */
    find(modelId: string): ModelCard | null {
      return cached?.byId.get(modelId) ?? null;
    },

    /** The first model: what vLLM uses when a request names none. */
    defaultModel(): string | null {
      return cached?.list.data[0]?.id ?? null;
    },
  };
}

export type ModelCatalog = ReturnType<typeof createModelCatalog>;
