/** @type {import('jest').Config} */
module.exports = {
  rootDir: '.',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/test/**/*.spec.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json' }] },
  moduleNameMapper: {
    '^@lib/db$': '<rootDir>/libs/db/src',
    '^@lib/db/(.*)$': '<rootDir>/libs/db/src/$1',
    '^@lib/sync$': '<rootDir>/libs/sync/src',
    '^@lib/sync/(.*)$': '<rootDir>/libs/sync/src/$1',
  },
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  setupFiles: ['reflect-metadata'],
  testTimeout: 120000,
  verbose: true,
};
