import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, readEnvironment } from '../src/config.js';
import { resolveJwtSecret } from '../src/platform/jwt-secret.js';

function problemsOf(environment: Record<string, string>): string[] {
  try {
    parseConfig(environment);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('configuration', () => {
  it('starts from documented defaults', () => {
    const { config } = parseConfig({});
    expect(config.port).toBe(8080);
    expect(config.nodeEnv).toBe('development');
    expect(config.database.url).toBeNull();
    expect(config.database.autoMigrate).toBe(true);
    expect(config.redis.url).toBeNull();
    expect(config.jwt.algorithm).toBe('HS256');
    expect(config.jwt.accessTtlSeconds).toBe(900);
    expect(config.jwt.refreshTtlSeconds).toBe(30 * 86_400);
    expect(config.limits.userRequests).toBe(100);
    expect(config.limits.userWindowSeconds).toBe(3600);
    expect(config.http.allowedHosts).toBeNull();
    expect(config.http.docsEnabled).toBe(true);
    expect(config.logSync).toBe(false);
    expect(config.vllm.baseUrls).toEqual(['http://127.0.0.1:8000']);
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['NODE_ENV', 'staging'],
    ['LOG_LEVEL', 'loud'],
    ['LOG_SYNC', 'maybe'],
    ['DEBUG', 'maybe'],
    ['DATABASE_URL', 'mysql://root@localhost/db'],
    ['DATABASE_SCHEMA', 'Robert"); DROP TABLE users;--'],
    ['DATABASE_POOL_SIZE', '0'],
    ['AUTO_MIGRATE', 'sometimes'],
    ['REDIS_URL', 'http://localhost:6379'],
    ['VLLM_BASE_URL', 'localhost:8000'],
    ['VLLM_HEALTH_TIMEOUT_MS', '-5'],
    ['JWT_ALGORITHM', 'RS256'],
    ['JWT_ALGORITHM', 'none'],
    ['JWT_EXPIRE_HOURS', '-1'],
    ['JWT_ACCESS_TTL', '15 minutes'],
    ['JWT_REFRESH_TTL', '0'],
    ['CORS_ORIGINS', '["http://localhost:3000", 5]'],
    ['CORS_ORIGINS', 'localhost:3000'],
    ['TRUSTED_PROXIES', '10.0.0.0/99'],
    ['TRUSTED_PROXIES', 'proxy.internal'],
    ['RATE_LIMIT_REQUESTS', '0'],
    ['RATE_LIMIT_WINDOW', '1.5'],
    ['RATE_LIMIT_IP_REQUESTS', 'many'],
    ['RATE_LIMIT_IP_WINDOW', '-1'],
    ['RATE_LIMIT_AUTH_REQUESTS', 'x'],
    ['RATE_LIMIT_AUTH_WINDOW', '0'],
    ['TOKEN_QUOTA_PER_MINUTE', '-1'],
    ['TOKEN_QUOTA_PER_DAY', 'lots'],
    ['MAX_CONCURRENT_STREAMS', '0'],
    ['MAX_TOKENS_CAP', '0'],
    ['BODY_LIMIT_BYTES', '10'],
    ['SHUTDOWN_TIMEOUT_MS', 'soon'],
    ['DOCS_ENABLED', 'perhaps'],
  ])('refuses %s=%s with a problem naming the variable', (name, value) => {
    const problems = problemsOf({ [name]: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(new RegExp(`^${name} `));
  });

  it('lists every invalid variable at once, and never shows a password from a URL', () => {
    const problems = problemsOf({ PORT: 'x', DATABASE_URL: 'mysql://admin:hunter2@db/app' });
    expect(problems).toHaveLength(2);
    expect(problems.join(' ')).not.toContain('hunter2');
  });

  it('requires a JWT secret of at least 32 bytes in production only', () => {
    expect(problemsOf({ NODE_ENV: 'production' })[0]).toMatch(/^JWT_SECRET is required/);
    expect(problemsOf({ NODE_ENV: 'production', JWT_SECRET: 'short' })[0]).toMatch(/^JWT_SECRET must be at least 32 bytes/);
    expect(problemsOf({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32) })).toEqual([]);
    expect(parseConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32) }).config.database.autoMigrate).toBe(false);
    expect(problemsOf({ JWT_SECRET: 'short' })).toEqual([]);
  });

  it('generates a development secret once and keeps it in the data folder', () => {
    const dataDirectory = mkdtempSync(join(tmpdir(), 'gateway-config-'));
    const { config } = parseConfig({ DATA_DIR: dataDirectory });
    const first = resolveJwtSecret(config).jwt.secret;
    const second = resolveJwtSecret(config).jwt.secret;
    expect(first).toMatch(/^[A-Za-z0-9_-]{64}$/);
    expect(second).toBe(first);
    expect(readFileSync(join(dataDirectory, 'jwt-secret'), 'utf8').trim()).toBe(first);
  });

  it('takes the access token lifetime from JWT_EXPIRE_HOURS unless JWT_ACCESS_TTL is set', () => {
    expect(parseConfig({ JWT_EXPIRE_HOURS: '2' }).config.jwt.accessTtlSeconds).toBe(7200);
    expect(parseConfig({ JWT_EXPIRE_HOURS: '2', JWT_ACCESS_TTL: '10m' }).config.jwt.accessTtlSeconds).toBe(600);
    expect(parseConfig({ JWT_REFRESH_TTL: '7d' }).config.jwt.refreshTtlSeconds).toBe(7 * 86_400);
  });

  it('reads lists as a JSON array or comma-separated', () => {
    expect(parseConfig({ CORS_ORIGINS: '["http://localhost:3000","https://chat.example.com/"]' }).config.http.corsOrigins).toEqual([
      'http://localhost:3000',
      'https://chat.example.com',
    ]);
    expect(parseConfig({ ALLOWED_HOSTS: 'a.example.com, b.example.com' }).config.http.allowedHosts).toEqual(['a.example.com', 'b.example.com']);
    expect(parseConfig({ TRUSTED_PROXIES: '10.0.0.0/8,::1,loopback' }).config.http.trustedProxies).toEqual(['10.0.0.0/8', '::1', 'loopback']);
  });

  it('accepts VLLM_BASE_URL with or without /v1, and several URLs', () => {
    expect(parseConfig({ VLLM_BASE_URL: 'http://gpu-1:8000/v1/, http://gpu-2:8000' }).config.vllm.baseUrls).toEqual([
      'http://gpu-1:8000',
      'http://gpu-2:8000',
    ]);
  });

  it('reads an optional .env file, with the process environment taking precedence', () => {
    const directory = mkdtempSync(join(tmpdir(), 'gateway-env-'));
    const envFilePath = join(directory, '.env');
    writeFileSync(envFilePath, 'PORT=9001\nLOG_LEVEL=debug\n# a comment\nRATE_LIMIT_REQUESTS="42"\n');
    const environment = readEnvironment({ processEnvironment: { LOG_LEVEL: 'warn' }, envFilePath });
    const { config } = parseConfig(environment);
    expect(config.port).toBe(9001);
    expect(config.logLevel).toBe('warn');
    expect(config.limits.userRequests).toBe(42);
    expect(readEnvironment({ processEnvironment: { PORT: '1' }, envFilePath: join(directory, 'missing') })).toEqual({ PORT: '1' });
  });

  it('accepts .env.example as it ships', () => {
    const environment = readEnvironment({ processEnvironment: {}, envFilePath: '.env.example' });
    expect(() => parseConfig(environment)).not.toThrow();
  });

  it('documents every variable it reads in README.md and .env.example', () => {
    const { variablesRead } = parseConfig({});
    const readme = readFileSync('README.md', 'utf8');
    const example = readFileSync('.env.example', 'utf8');
    const undocumented = [...variablesRead].filter((name) => !readme.includes(`\`${name}\``) || !example.includes(name));
    expect(undocumented).toEqual([]);
  });
});
