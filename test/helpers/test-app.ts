// Builds the real app for a test, on real services or the embedded defaults, and cleans up after.
// A second instance can share the first one's database schema, Redis key prefix and JWT secret,
// as two gateway processes behind a load balancer would.
import { Writable } from 'node:stream';
import { buildApp, type App, type AppDependencies, type BuildOptions } from '../../src/app.js';
import type { Config } from '../../src/config.js';
import { createLogger } from '../../src/platform/logging.js';
import { dropSchema, testConfig, testRedisUrl, type Backend } from './environment.js';
import { Redis } from 'ioredis';

export interface TestApp {
  app: App;
  config: Config;
  /** Every log line the app wrote, when created with captureLogs. */
  logs: string[];
  close(): Promise<void>;
}

export async function createTestApp(options: {
  backend: Backend;
  environment?: Record<string, string>;
  dependencies?: Partial<AppDependencies>;
  build?: BuildOptions;
  /** Share the database schema, key prefix and JWT secret of this app (a second gateway instance). */
  sharing?: TestApp;
  /** Collect log lines at debug level into `logs`. */
  captureLogs?: boolean;
}): Promise<TestApp> {
  if (options.sharing !== undefined && options.backend === 'embedded') {
    throw new Error('Two instances can share state only on the real backend (PostgreSQL + Redis)');
  }
  const environment: Record<string, string> = { ...options.environment };
  if (options.sharing !== undefined) {
    const shared = options.sharing.config;
    environment.JWT_SECRET ??= shared.jwt.secret ?? '';
    if (options.backend === 'real') {
      environment.DATABASE_SCHEMA = shared.database.schema;
      environment.REDIS_KEY_PREFIX = shared.redis.keyPrefix;
    }
  }
  if (options.captureLogs === true) environment.LOG_LEVEL ??= 'debug';
  const config = testConfig({ backend: options.backend, environment });

  const logs: string[] = [];
  const dependencies: Partial<AppDependencies> = { ...options.dependencies };
  if (options.captureLogs === true) {
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logs.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
        callback();
      },
    });
    dependencies.logger = createLogger({ config, destination, pretty: false });
  }

  const app = await buildApp(config, dependencies, options.build);
  const owner = options.sharing === undefined;
  return {
    app,
    config,
    logs,
    async close() {
      await app.close();
      if (owner && options.backend === 'real') {
        await dropSchema(config.database.schema);
        await deleteKeys(config.redis.keyPrefix);
      }
    },
  };
}

/** Removes a test's Redis keys (everything under its prefix). */
export async function deleteKeys(prefix: string): Promise<void> {
  if (testRedisUrl === null) return;
  const redis = new Redis(testRedisUrl, { lazyConnect: true });
  await redis.connect();
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}
