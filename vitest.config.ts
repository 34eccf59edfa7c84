import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    env: { TZ: 'UTC' },
    globalSetup: 'test/support/global-setup.ts',
    pool: 'forks',
    // Two cores: two test files at a time (each has its own database), the server takes the rest.
    maxWorkers: 2,
    hookTimeout: 120_000,
    // Generous: these are whole CLI runs on real servers, two files at a time on two cores.
    testTimeout: 120_000,
    teardownTimeout: 60_000,
  },
});
