// Test environments: every test file gets its own PostgreSQL schema and Redis key prefix, so files
// run in parallel without seeing each other. Real services come from TEST_DATABASE_URL and
// TEST_REDIS_URL (.ci/run always sets them); the embedded defaults need nothing.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { parseConfig, type Config } from '../../src/config.js';

export const testDatabaseUrl = process.env.TEST_DATABASE_URL ?? null;
export const testRedisUrl = process.env.TEST_REDIS_URL ?? null;
export const hasRealServices = testDatabaseUrl !== null && testRedisUrl !== null;

export type Backend = 'real' | 'embedded';

/** The backends to run a suite against: embedded always, real PostgreSQL + Redis when configured. */
export const backends: Backend[] = hasRealServices ? ['real', 'embedded'] : ['embedded'];

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** A config for one test app: isolated schema and key prefix, quiet logs, a random JWT secret. */
export function testConfig(options: { backend: Backend; environment?: Record<string, string>; schema?: string; keyPrefix?: string }): Config {
  const base: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    PORT: '0',
    HOST: '127.0.0.1',
    JWT_SECRET: randomBytes(32).toString('hex'),
    VLLM_BASE_URL: 'http://127.0.0.1:9',
    DATA_DIR: '/tmp/vllm-chat-gateway-tests',
    // By design a limit check that Redis does not answer within LIMITS_STORE_TIMEOUT_MS (50 ms in
    // production) is decided on the instance's own memory. With many test files running at once on
    // two cores, a burst's answers can wait longer than that in a busy event loop, and a test of
    // shared limits would then see each instance count alone (CI once let 142 of 200 through a
    // limit of 100). Tests of the fallback itself set the production value. Below ioredis's own
    // command timeout (1 s), so a slow Redis still takes the limits' timeout path, not ioredis's.
    LIMITS_STORE_TIMEOUT_MS: '900',
  };
  if (options.backend === 'real') {
    if (testDatabaseUrl === null || testRedisUrl === null) throw new Error('TEST_DATABASE_URL and TEST_REDIS_URL are needed for the real backend');
    base.DATABASE_URL = testDatabaseUrl;
    base.DATABASE_SCHEMA = options.schema ?? uniqueName('test');
    base.REDIS_URL = testRedisUrl;
    base.REDIS_KEY_PREFIX = `${options.keyPrefix ?? uniqueName('test')}:`;
  } else {
    base.DATABASE_URL = 'memory://';
  }
  return parseConfig({ ...base, ...options.environment }).config;
}

/** Drops a test schema on the real PostgreSQL server. */
export async function dropSchema(schema: string): Promise<void> {
  if (testDatabaseUrl === null || schema === 'public') return;
  const client = new pg.Client({ connectionString: testDatabaseUrl });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}
