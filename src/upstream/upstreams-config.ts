// Which vLLM servers the gateway routes to: the URLs of VLLM_BASE_URL, or UPSTREAMS_FILE (YAML or
// JSON) with a name, URL, key, models, weight and concurrency limit per server, and model aliases.
// A bad file is refused with a message naming the problem, at start and on reload.
import { readFileSync } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';

const upstreamSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' }),
    url: Type.String({ pattern: '^https?://' }),
    api_key: Type.Optional(Type.String({ minLength: 1 })),
    models: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'Served models; discovered from /v1/models when omitted' })),
    weight: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1000 })),
    max_concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  },
  { additionalProperties: false },
);

const upstreamsFileSchema = Type.Object(
  {
    upstreams: Type.Array(upstreamSchema, { minItems: 1 }),
    aliases: Type.Optional(Type.Record(Type.String({ minLength: 1 }), Type.String({ minLength: 1 }))),
  },
  { additionalProperties: false },
);

export type UpstreamsFile = Static<typeof upstreamsFileSchema>;

export interface UpstreamDefinition {
  name: string;
  url: string;
  apiKey: string | null;
  /** Models configured for this server; null: whatever its /v1/models lists. */
  models: string[] | null;
  weight: number;
  maxConcurrency: number | null;
}

export interface UpstreamsConfig {
  upstreams: UpstreamDefinition[];
  aliases: Record<string, string>;
}

export class UpstreamsConfigError extends Error {}

const validate = new Ajv({ allErrors: false, strict: false }).compile(upstreamsFileSchema);

/** The servers of VLLM_BASE_URL (named vllm-1, vllm-2, …), all with the global VLLM_API_KEY. */
export function upstreamsFromUrls(urls: string[], apiKey: string | null): UpstreamsConfig {
  return {
    upstreams: urls.map((url, index) => ({ name: `vllm-${index + 1}`, url, apiKey, models: null, weight: 1, maxConcurrency: null })),
    aliases: {},
  };
}

/** Reads and checks UPSTREAMS_FILE; throws UpstreamsConfigError with a message naming the problem. */
export function loadUpstreamsFile(path: string, defaultApiKey: string | null): UpstreamsConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UpstreamsConfigError(`UPSTREAMS_FILE ${path} cannot be read: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = /\.json$/i.test(path) ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new UpstreamsConfigError(`UPSTREAMS_FILE ${path} is not valid ${/\.json$/i.test(path) ? 'JSON' : 'YAML'}: ${(error as Error).message}`);
  }
  if (!validate(parsed)) {
    const first = validate.errors?.[0];
    const field = typeof first?.params.additionalProperty === 'string' ? ` (${first.params.additionalProperty})` : '';
    throw new UpstreamsConfigError(`UPSTREAMS_FILE ${path}: ${first?.instancePath || '(root)'} ${first?.message ?? 'is invalid'}${field}`);
  }
  const file = parsed as UpstreamsFile;
  const names = new Set<string>();
  for (const upstream of file.upstreams) {
    if (names.has(upstream.name)) throw new UpstreamsConfigError(`UPSTREAMS_FILE ${path}: the name ${upstream.name} is used twice`);
    names.add(upstream.name);
    try {
      new URL(upstream.url);
    } catch {
      throw new UpstreamsConfigError(`UPSTREAMS_FILE ${path}: ${upstream.name} has an invalid url`);
    }
  }
  return {
    upstreams: file.upstreams.map((upstream) => ({
      name: upstream.name,
      url: upstream.url.replace(/\/+$/, '').replace(/\/v1$/, ''),
      apiKey: upstream.api_key ?? defaultApiKey,
      models: upstream.models ?? null,
      weight: upstream.weight ?? 1,
      maxConcurrency: upstream.max_concurrency ?? null,
    })),
    aliases: file.aliases ?? {},
  };
}
