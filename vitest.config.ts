import { defineConfig } from 'vitest/config';

// Integration tests talk to a real Redis at REDIS_URL (CI starts one with
// scripts/ensure-redis.sh). Each test must use its own key prefix, because
// test files run in parallel against the same server.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'test/bench/**'],
    environment: 'node',
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 30_000,
    teardownTimeout: 10_000,
    env: {
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    },
    // A run that finds no test file fails: CI must never pass on nothing.
    passWithNoTests: false,
  },
});
