import { defineConfig } from 'vitest/config';

/**
 * `npm run test:unit`: the tests that need neither root, FUSE, a registry nor podman, in seconds.
 * A new test file of that kind goes into one of these folders (or is listed here).
 */
export default defineConfig({
  test: {
    include: [
      'test/formats/**/*.test.ts',
      'test/writers/**/*.test.ts',
      'test/cache/**/*.test.ts',
      'test/catalog/info.test.ts',
      'test/catalog/*-unit.test.ts',
      'test/sources/reference.test.ts',
      'test/sources/auth-file.test.ts',
      'test/sources/credential-store.test.ts',
      'test/unit/**/*.test.ts',
    ],
    exclude: ['test/formats/zstd-chunked-podman.test.ts'],
    testTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
