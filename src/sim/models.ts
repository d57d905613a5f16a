// The served models: lookup by id (LoRA adapters resolve to their base model) and vLLM's model
// cards for GET /v1/models.
import { randomUUID } from 'node:crypto';
import { DEFAULT_MODEL, type SimulatedModel } from './options.js';

export interface ServedModel {
  id: string;
  /** What GET /v1/models shows as max_model_len (null for LoRA adapters, as vLLM does). */
  cardMaxModelLen: number | null;
  /** The context window that applies to requests (a LoRA adapter uses its base model's). */
  contextLength: number;
  parent: string | null;
  root: string;
  /** The base model's id: vLLM labels metrics with the base model, also for LoRA requests. */
  baseModelId: string;
}

export interface ModelRegistry {
  all: readonly ServedModel[];
  baseModelIds: readonly string[];
  /** An omitted model means the first served model, as in vLLM. */
  resolve(modelId: string | null): ServedModel | null;
}

const FALLBACK_CONTEXT_LENGTH = 8192;

export function createModelRegistry(models: readonly SimulatedModel[] | undefined): ModelRegistry {
  const configured = models !== undefined && models.length > 0 ? models : [DEFAULT_MODEL];
  const byId = new Map<string, SimulatedModel>();
  for (const model of configured) {
    if (byId.has(model.id)) throw new Error(`simulator: duplicate model id ${model.id}`);
    byId.set(model.id, model);
  }
  const served = configured.map((model) => toServedModel(model, byId));
  const servedById = new Map(served.map((model) => [model.id, model]));
  const first = served[0];
  return {
    all: served,
    baseModelIds: served.filter((model) => model.parent === null).map((model) => model.id),
    resolve(modelId) {
      if (modelId === null) return first ?? null;
      return servedById.get(modelId) ?? null;
    },
  };
}

function toServedModel(model: SimulatedModel, byId: Map<string, SimulatedModel>): ServedModel {
  const parentId = model.parent ?? null;
  if (parentId === null) {
    return {
      id: model.id,
      cardMaxModelLen: model.maxModelLen,
      contextLength: model.maxModelLen ?? FALLBACK_CONTEXT_LENGTH,
      parent: null,
      root: model.root ?? model.id,
      baseModelId: model.id,
    };
  }
  const parent = byId.get(parentId);
  if (parent === undefined || (parent.parent ?? null) !== null) {
    throw new Error(`simulator: LoRA ${model.id} needs a served base model as parent, got ${parentId}`);
  }
  return {
    id: model.id,
    cardMaxModelLen: model.maxModelLen,
    contextLength: model.maxModelLen ?? parent.maxModelLen ?? FALLBACK_CONTEXT_LENGTH,
    parent: parentId,
    root: model.root ?? `/loras/${model.id}`,
    baseModelId: parentId,
  };
}

/** The body of GET /v1/models, with vLLM's card and permission keys in vLLM's order. */
export function renderModelList(registry: ModelRegistry, created: number): string {
  const data = registry.all.map((model) => ({
    id: model.id,
    object: 'model',
    created,
    owned_by: 'vllm',
    root: model.root,
    parent: model.parent,
    max_model_len: model.cardMaxModelLen,
    permission: [
      {
        id: `modelperm-${randomUUID().replaceAll('-', '')}`,
        object: 'model_permission',
        created,
        allow_create_engine: false,
        allow_sampling: true,
        allow_logprobs: true,
        allow_search_indices: false,
        allow_view: true,
        allow_fine_tuning: false,
        organization: '*',
        group: null,
        is_blocking: false,
      },
    ],
  }));
  return JSON.stringify({ object: 'list', data });
}
