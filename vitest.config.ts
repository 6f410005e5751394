import { defineConfig } from 'vitest/config';

// Native addons are safest in forked processes (a crash would otherwise take the runner down).
export default defineConfig({
  test: {
    pool: 'forks',
    isolate: true,
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
