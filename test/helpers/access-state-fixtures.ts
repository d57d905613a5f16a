// For tests of the access state itself: the app (to create users, sessions and keys through its
// routes, on a database it migrated) and, beside it, a store of the test's own for the access
// states the test builds.
import { buildApp, type App } from '../../src/app.js';
import type { Config } from '../../src/config.js';
import { openDatabase, type DatabaseHandle } from '../../src/platform/database.js';
import type { KeyValueStore } from '../../src/platform/key-value-store.js';
import { createMemoryStore } from '../../src/platform/memory-store.js';
import { createRedisStore } from '../../src/platform/redis-store.js';
import { relaxedAuthLimits } from './auth-client.js';
import { dropSchema, testConfig, testRedisUrl, uniqueName, type Backend } from './environment.js';
import { deleteKeys } from './test-app.js';

export type StoreKind = 'memory' | 'redis';

export interface AppWithStore {
  config: Config;
  database: DatabaseHandle;
  app: App;
  store: KeyValueStore;
  close(): Promise<void>;
}

export async function openAppWithStore(options: { database: Backend; store: StoreKind; name: string }): Promise<AppWithStore> {
  const config = testConfig({ backend: options.database, environment: relaxedAuthLimits });
  const database = await openDatabase({ database: config.database, dataDirectory: config.dataDirectory });
  const app = await buildApp(config, { database });
  const storePrefix = `${uniqueName(options.name)}:`;
  const store = options.store === 'memory' ? createMemoryStore() : await createRedisStore({ url: testRedisUrl!, keyPrefix: storePrefix });
  return {
    config,
    database,
    app,
    store,
    async close() {
      await app.close();
      await store.close();
      await database.close();
      if (options.database === 'real') {
        await dropSchema(config.database.schema);
        await deleteKeys(config.redis.keyPrefix);
      }
      if (options.store === 'redis') await deleteKeys(storePrefix);
    },
  };
}
