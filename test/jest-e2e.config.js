// e2e suites: the real HTTP app, a real redis-server from PATH, the fake HF upstream on loopback.
import { readFileSync } from 'node:fs';
import { ignoredWithoutRedis } from './support/redis-requirement.js';

const swc = JSON.parse(readFileSync(new URL('../.swcrc', import.meta.url), 'utf8'));

/** @type {import('jest').Config} */
export default {
  rootDir: '..',
  testEnvironment: 'node',
  testRegex: ['test/.*\\.e2e-spec\\.ts$', 'test/support/.*\\.spec\\.ts$'],
  testPathIgnorePatterns: ['/node_modules/', ...ignoredWithoutRedis(['\\.redis\\.e2e-spec\\.ts$'], 'the *.redis.e2e-spec.ts suites')],
  globalSetup: '<rootDir>/test/global-setup.js',
  setupFiles: ['<rootDir>/test/support/nest-esm-first.js'],
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': ['@swc/jest', swc] },
  testTimeout: 20_000,
};
