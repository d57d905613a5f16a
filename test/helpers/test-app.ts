// Builds the real app for a test, on real services or the embedded defaults, and cleans up after.
import { buildApp, type App, type AppDependencies, type BuildOptions } from '../../src/app.js';
import type { Config } from '../../src/config.js';
import { dropSchema, testConfig, type Backend } from './environment.js';

export interface TestApp {
  app: App;
  config: Config;
  close(): Promise<void>;
}

export async function createTestApp(options: {
  backend: Backend;
  environment?: Record<string, string>;
  dependencies?: Partial<AppDependencies>;
  build?: BuildOptions;
}): Promise<TestApp> {
  const config = testConfig({ backend: options.backend, ...(options.environment === undefined ? {} : { environment: options.environment }) });
  const app = await buildApp(config, options.dependencies, options.build);
  return {
    app,
    config,
    async close() {
      await app.close();
      if (options.backend === 'real') await dropSchema(config.database.schema);
    },
  };
}
