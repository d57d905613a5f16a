import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Files run in parallel in separate workers; each file owns its database schema and key prefix.
    pool: 'forks',
  },
});
