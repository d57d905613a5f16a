// One schema for every environment variable the gateway reads: parsed, checked and turned into a
// typed Config at boot. A bad value stops the start with a line that names the variable.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { ConfigError, EnvironmentReader, isProxyAddress, isUrlWithProtocol, redactUrl, type Environment } from './config-readers.js';

export { ConfigError } from './config-readers.js';

export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const jwtAlgorithms = ['HS256', 'HS384', 'HS512'] as const;
export const nodeEnvironments = ['development', 'production', 'test'] as const;

/** The smallest JWT secret accepted in production, in bytes (HS256 wants at least its hash size). */
export const minimumJwtSecretBytes = 32;

export interface Config {
  nodeEnv: (typeof nodeEnvironments)[number];
  host: string;
  port: number;
  logLevel: (typeof logLevels)[number];
  /** Log lines written as each is made (blocking) rather than gathered and written off the request path. */
  logSync: boolean;
  debug: boolean;
  dataDirectory: string;
  bodyLimitBytes: number;
  shutdownTimeoutMs: number;
  database: {
    /** A postgres:// URL, `memory://` for an in-memory PGlite, or null for PGlite on disk in the data folder. */
    url: string | null;
    schema: string;
    poolSize: number;
    autoMigrate: boolean;
  };
  redis: {
    /** A redis:// URL, or null for the in-process store (one gateway instance only). */
    url: string | null;
    keyPrefix: string;
  };
  vllm: {
    baseUrls: string[];
    apiKey: string | null;
    healthTimeoutMs: number;
    /** Role → vLLM `priority` (lower is served first); null sends no priority (vLLM needs --scheduling-policy priority). */
    priorityByRole: Record<'user' | 'admin', number> | null;
    /** Salt vLLM's prefix cache per user, so users never share cached prefixes. */
    cacheSaltPerUser: boolean;
    modelsCacheTtlMs: number;
  };
  relay: {
    connectTimeoutMs: number;
    keepAliveTimeoutMs: number;
    /** Streams: time until vLLM's response headers. */
    headersTimeoutMs: number;
    /** Streams: longest silence between two events. */
    idleTimeoutMs: number;
    /** Any request, start to end. */
    totalTimeoutMs: number;
    heartbeatMs: number;
    slowClientTimeoutMs: number;
    maxChoices: number;
    maxMessages: number;
    usageFlushIntervalMs: number;
  };
  upstreamsFile: string | null;
  routing: {
    pollIntervalMs: number;
    failureThreshold: number;
    cooldownMs: number;
    queueSize: number;
    queueTimeoutMs: number;
    /** Keep a conversation on the same vLLM server (prefix cache) unless it is busier. */
    affinity: boolean;
  };
  jwt: {
    /** Null until resolved: in development a generated secret is kept in the data folder. */
    secret: string | null;
    /** The secret before a rotation: tokens it signed are still accepted until they expire. */
    previousSecret: string | null;
    algorithm: (typeof jwtAlgorithms)[number];
    accessTtlSeconds: number;
    refreshTtlSeconds: number;
    /** A rotated refresh token presented again within this many seconds still works (two tabs at once). */
    refreshReuseGraceSeconds: number;
  };
  /** Creates this admin at start when no admin exists yet. */
  bootstrapAdmin: { email: string; password: string } | null;
  http: {
    corsOrigins: string[];
    /** Null allows any Host header. */
    allowedHosts: string[] | null;
    trustedProxies: string[];
    docsEnabled: boolean;
  };
  limits: {
    userRequests: number;
    userWindowSeconds: number;
    ipRequests: number;
    ipWindowSeconds: number;
    authRequests: number;
    authWindowSeconds: number;
    /** 0 means no quota. */
    tokenQuotaPerMinute: number;
    tokenQuotaPerDay: number;
    maxConcurrentStreams: number;
    maxTokensCap: number;
    /** Tokens reserved for a request that names no max_tokens, until its real usage is known. */
    defaultTokenReservation: number;
    /** How long a limit check may wait for Redis before this instance decides alone. */
    storeTimeoutMs: number;
    /** With Redis: a caller's next request is charged with the current one and admitted from memory (prepaid-admissions.ts). */
    prepaidAdmissions: boolean;
    /** Per-role defaults over the ones above (e.g. admins allowed more). */
    byRole: Partial<Record<'user' | 'admin', RoleLimits>>;
  };
}

export interface RoleLimits {
  requests?: number;
  window?: number;
  tokens_per_minute?: number;
  tokens_per_day?: number;
  concurrent_streams?: number;
}

export interface LoadedConfig {
  config: Config;
  /** Every variable the schema reads; documentation tests check that each one is described. */
  variablesRead: ReadonlySet<string>;
}

/** Parses an environment into a Config, or throws ConfigError listing every invalid variable. */
export function parseConfig(environment: Environment): LoadedConfig {
  const read = new EnvironmentReader(environment);
  const nodeEnv = read.oneOf('NODE_ENV', nodeEnvironments, 'development');
  const production = nodeEnv === 'production';
  const debug = read.boolean('DEBUG', false);

  const config: Config = {
    nodeEnv,
    host: read.string('HOST', '0.0.0.0'),
    port: read.integer('PORT', { fallback: 8080, min: 0, max: 65_535 }),
    logLevel: read.oneOf('LOG_LEVEL', logLevels, debug ? 'debug' : 'info'),
    logSync: read.boolean('LOG_SYNC', false),
    debug,
    dataDirectory: resolve(read.string('DATA_DIR', './data')),
    bodyLimitBytes: read.integer('BODY_LIMIT_BYTES', { fallback: 1_048_576, min: 1024, max: 104_857_600 }),
    shutdownTimeoutMs: read.integer('SHUTDOWN_TIMEOUT_MS', { fallback: 30_000, min: 0, max: 3_600_000 }),
    database: {
      url: readDatabaseUrl(read),
      schema: readIdentifier(read, 'DATABASE_SCHEMA', 'public'),
      poolSize: read.integer('DATABASE_POOL_SIZE', { fallback: 10, min: 1, max: 1000 }),
      autoMigrate: read.boolean('AUTO_MIGRATE', !production),
    },
    redis: {
      url: readRedisUrl(read),
      keyPrefix: read.string('REDIS_KEY_PREFIX', 'vcg:'),
    },
    vllm: {
      baseUrls: readVllmBaseUrls(read),
      apiKey: read.optionalString('VLLM_API_KEY'),
      healthTimeoutMs: read.integer('VLLM_HEALTH_TIMEOUT_MS', { fallback: 2000, min: 50, max: 60_000 }),
      priorityByRole: readPriorityByRole(read),
      cacheSaltPerUser: read.boolean('CACHE_SALT_PER_USER', true),
      modelsCacheTtlMs: read.integer('MODELS_CACHE_TTL_MS', { fallback: 10_000, min: 0, max: 3_600_000 }),
    },
    relay: {
      connectTimeoutMs: read.integer('UPSTREAM_CONNECT_TIMEOUT_MS', { fallback: 5000, min: 10, max: 600_000 }),
      // Below vLLM's own 5 s (VLLM_HTTP_TIMEOUT_KEEP_ALIVE), which uvicorn does not announce: the
      // gateway closes an idle connection before vLLM can close it under a request just sent on it.
      keepAliveTimeoutMs: read.integer('UPSTREAM_KEEP_ALIVE_TIMEOUT_MS', { fallback: 4000, min: 100, max: 600_000 }),
      headersTimeoutMs: read.integer('UPSTREAM_HEADERS_TIMEOUT_MS', { fallback: 60_000, min: 10, max: 3_600_000 }),
      idleTimeoutMs: read.integer('UPSTREAM_IDLE_TIMEOUT_MS', { fallback: 120_000, min: 10, max: 3_600_000 }),
      totalTimeoutMs: read.integer('UPSTREAM_TOTAL_TIMEOUT_MS', { fallback: 900_000, min: 10, max: 86_400_000 }),
      heartbeatMs: read.integer('SSE_HEARTBEAT_MS', { fallback: 15_000, min: 10, max: 600_000 }),
      slowClientTimeoutMs: read.integer('SLOW_CLIENT_TIMEOUT_MS', { fallback: 30_000, min: 10, max: 3_600_000 }),
      maxChoices: read.integer('MAX_CHOICES', { fallback: 8, min: 1, max: 128 }),
      maxMessages: read.integer('MAX_MESSAGES', { fallback: 1000, min: 1, max: 100_000 }),
      usageFlushIntervalMs: read.integer('USAGE_FLUSH_INTERVAL_MS', { fallback: 1000, min: 10, max: 600_000 }),
    },
    upstreamsFile: read.optionalString('UPSTREAMS_FILE'),
    routing: {
      pollIntervalMs: read.integer('UPSTREAM_POLL_INTERVAL_MS', { fallback: 5000, min: 100, max: 600_000 }),
      failureThreshold: read.integer('UPSTREAM_FAILURE_THRESHOLD', { fallback: 3, min: 1, max: 1000 }),
      cooldownMs: read.integer('UPSTREAM_COOLDOWN_MS', { fallback: 10_000, min: 100, max: 3_600_000 }),
      queueSize: read.integer('UPSTREAM_QUEUE_SIZE', { fallback: 100, min: 0, max: 100_000 }),
      queueTimeoutMs: read.integer('UPSTREAM_QUEUE_TIMEOUT_MS', { fallback: 5000, min: 0, max: 600_000 }),
      affinity: read.boolean('UPSTREAM_AFFINITY', true),
    },
    jwt: readJwt(read, production),
    bootstrapAdmin: readBootstrapAdmin(read),
    http: {
      corsOrigins: readCorsOrigins(read),
      allowedHosts: read.list('ALLOWED_HOSTS') ?? null,
      trustedProxies: readTrustedProxies(read),
      docsEnabled: read.boolean('DOCS_ENABLED', debug || nodeEnv === 'development'),
    },
    limits: {
      userRequests: read.integer('RATE_LIMIT_REQUESTS', { fallback: 100, min: 1 }),
      userWindowSeconds: read.integer('RATE_LIMIT_WINDOW', { fallback: 3600, min: 1 }),
      ipRequests: read.integer('RATE_LIMIT_IP_REQUESTS', { fallback: 1000, min: 1 }),
      ipWindowSeconds: read.integer('RATE_LIMIT_IP_WINDOW', { fallback: 3600, min: 1 }),
      authRequests: read.integer('RATE_LIMIT_AUTH_REQUESTS', { fallback: 20, min: 1 }),
      authWindowSeconds: read.integer('RATE_LIMIT_AUTH_WINDOW', { fallback: 300, min: 1 }),
      tokenQuotaPerMinute: read.integer('TOKEN_QUOTA_PER_MINUTE', { fallback: 0, min: 0 }),
      tokenQuotaPerDay: read.integer('TOKEN_QUOTA_PER_DAY', { fallback: 0, min: 0 }),
      maxConcurrentStreams: read.integer('MAX_CONCURRENT_STREAMS', { fallback: 4, min: 1, max: 10_000 }),
      maxTokensCap: read.integer('MAX_TOKENS_CAP', { fallback: 4096, min: 1, max: 10_000_000 }),
      defaultTokenReservation: read.integer('TOKEN_RESERVATION_DEFAULT', { fallback: 1024, min: 1, max: 10_000_000 }),
      storeTimeoutMs: read.integer('LIMITS_STORE_TIMEOUT_MS', { fallback: 50, min: 1, max: 10_000 }),
      prepaidAdmissions: read.boolean('LIMITS_PREPAID_ADMISSIONS', true),
      byRole: readLimitsByRole(read),
    },
  };

  if (read.problems.length > 0) throw new ConfigError(read.problems);
  return { config, variablesRead: read.variablesRead };
}

/**
 * The process environment over an optional `.env` file: variables already set in the
 * environment win, as with every dotenv loader.
 */
export function readEnvironment(options: { processEnvironment: Environment; envFilePath?: string }): Environment {
  const path = options.envFilePath ?? resolve('.env');
  if (!existsSync(path)) return options.processEnvironment;
  const fromFile = parseEnv(readFileSync(path, 'utf8'));
  return { ...fromFile, ...options.processEnvironment };
}

function readDatabaseUrl(read: EnvironmentReader): string | null {
  const value = read.raw('DATABASE_URL');
  if (value === undefined) return null;
  if (value === 'memory://') return value;
  if (!isUrlWithProtocol(value, ['postgres:', 'postgresql:'])) {
    read.problem('DATABASE_URL', 'must be a postgres:// URL, or memory:// for an in-memory PGlite', redactUrl(value));
    return null;
  }
  return value;
}

function readRedisUrl(read: EnvironmentReader): string | null {
  const value = read.raw('REDIS_URL');
  if (value === undefined || value === 'memory://') return null;
  if (!isUrlWithProtocol(value, ['redis:', 'rediss:'])) {
    read.problem('REDIS_URL', 'must be a redis:// or rediss:// URL, or memory:// for the in-process store', redactUrl(value));
    return null;
  }
  return value;
}

function readIdentifier(read: EnvironmentReader, name: string, fallback: string): string {
  const value = read.string(name, fallback);
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(value)) {
    read.problem(name, 'must be a lower-case SQL identifier (letters, digits, underscore)', value);
    return fallback;
  }
  return value;
}

function readVllmBaseUrls(read: EnvironmentReader): string[] {
  const urls = read.list('VLLM_BASE_URL') ?? ['http://127.0.0.1:8000'];
  const normalised: string[] = [];
  for (const url of urls) {
    if (!isUrlWithProtocol(url, ['http:', 'https:'])) {
      read.problem('VLLM_BASE_URL', 'must be one or more http:// or https:// URLs, comma-separated', redactUrl(url));
      continue;
    }
    // The seed's examples write the base URL with or without `/v1`; the gateway adds the path itself.
    normalised.push(url.replace(/\/+$/, '').replace(/\/v1$/, ''));
  }
  if (urls.length === 0) read.problem('VLLM_BASE_URL', 'must name at least one URL');
  return normalised;
}

function readJwt(read: EnvironmentReader, production: boolean): Config['jwt'] {
  const secret = read.optionalString('JWT_SECRET');
  if (production && secret === null) {
    read.problem('JWT_SECRET', `is required when NODE_ENV=production (at least ${minimumJwtSecretBytes} random bytes)`);
  } else if (production && secret !== null && Buffer.byteLength(secret) < minimumJwtSecretBytes) {
    read.problem('JWT_SECRET', `must be at least ${minimumJwtSecretBytes} bytes when NODE_ENV=production`);
  }
  const expireHours = read.positiveNumber('JWT_EXPIRE_HOURS');
  const accessFallback = expireHours === undefined ? 900 : Math.round(expireHours * 3600);
  const previousSecret = read.optionalString('JWT_SECRET_PREVIOUS');
  if (production && previousSecret !== null && Buffer.byteLength(previousSecret) < minimumJwtSecretBytes) {
    read.problem('JWT_SECRET_PREVIOUS', `must be at least ${minimumJwtSecretBytes} bytes when NODE_ENV=production`);
  }
  return {
    secret,
    previousSecret,
    algorithm: read.oneOf('JWT_ALGORITHM', jwtAlgorithms, 'HS256'),
    accessTtlSeconds: read.durationSeconds('JWT_ACCESS_TTL', accessFallback),
    refreshTtlSeconds: read.durationSeconds('JWT_REFRESH_TTL', 30 * 86_400),
    refreshReuseGraceSeconds: read.integer('REFRESH_REUSE_GRACE_SECONDS', { fallback: 10, min: 0, max: 300 }),
  };
}

function readPriorityByRole(read: EnvironmentReader): Config['vllm']['priorityByRole'] {
  const entries = read.list('VLLM_PRIORITY_BY_ROLE');
  if (entries === undefined) return null;
  const priorities: Record<'user' | 'admin', number> = { user: 0, admin: 0 };
  for (const entry of entries) {
    const match = /^(user|admin)\s*[=:]\s*(-?\d+)$/.exec(entry);
    if (match === null) {
      read.problem('VLLM_PRIORITY_BY_ROLE', 'must look like admin=-10,user=0', entry);
      return null;
    }
    priorities[match[1] as 'user' | 'admin'] = Number(match[2]);
  }
  return priorities;
}

function readLimitsByRole(read: EnvironmentReader): Config['limits']['byRole'] {
  const value = read.raw('LIMITS_BY_ROLE');
  if (value === undefined) return {};
  const fields = ['requests', 'window', 'tokens_per_minute', 'tokens_per_day', 'concurrent_streams'];
  try {
    const parsed = JSON.parse(value) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    const result: Config['limits']['byRole'] = {};
    for (const [role, limits] of Object.entries(parsed as Record<string, unknown>)) {
      if (role !== 'user' && role !== 'admin') throw new Error(`unknown role ${role}`);
      if (typeof limits !== 'object' || limits === null) throw new Error('limits must be objects');
      for (const [field, number] of Object.entries(limits as Record<string, unknown>)) {
        if (!fields.includes(field) || typeof number !== 'number' || !Number.isInteger(number) || number < 0) throw new Error(`bad field ${field}`);
      }
      result[role] = limits;
    }
    return result;
  } catch {
    read.problem('LIMITS_BY_ROLE', `must be JSON like {"admin":{"requests":1000,"tokens_per_day":0}} with fields ${fields.join(', ')}`, value);
    return {};
  }
}

function readBootstrapAdmin(read: EnvironmentReader): Config['bootstrapAdmin'] {
  const email = read.optionalString('ADMIN_EMAIL');
  const password = read.raw('ADMIN_PASSWORD');
  if (email === null && password === undefined) return null;
  if (email === null || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) {
    read.problem('ADMIN_EMAIL', 'must be an email address when ADMIN_PASSWORD is set', email ?? undefined);
    return null;
  }
  if (password === undefined || password.length < 12) {
    read.problem('ADMIN_PASSWORD', 'must be at least 12 characters when ADMIN_EMAIL is set');
    return null;
  }
  return { email, password };
}

function readCorsOrigins(read: EnvironmentReader): string[] {
  const origins = read.list('CORS_ORIGINS') ?? [];
  for (const origin of origins) {
    const valid = origin === '*' || (isUrlWithProtocol(origin, ['http:', 'https:']) && new URL(origin).origin === origin.replace(/\/$/, ''));
    if (!valid) read.problem('CORS_ORIGINS', 'must list origins such as https://chat.example.com, or *', origin);
  }
  return origins.map((origin) => origin.replace(/\/$/, ''));
}

function readTrustedProxies(read: EnvironmentReader): string[] {
  const proxies = read.list('TRUSTED_PROXIES') ?? [];
  for (const proxy of proxies) {
    if (!isProxyAddress(proxy)) read.problem('TRUSTED_PROXIES', 'must list IP addresses or CIDR ranges', proxy);
  }
  return proxies;
}
