import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Fails a test file that leaves a socket, server, child process, timer or interval open.
    setupFiles: ['test/support/leak-check.ts'],
    pool: 'forks',
    // Two files at a time: one at a time took 13 of CI's 15 minutes on a slow host (71 files).
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
