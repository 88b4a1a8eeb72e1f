// Chaos suite: the built app as a real process, a real redis-server, the fake HF upstream, bounded load.
import { readFileSync } from 'node:fs';
import { ignoredWithoutRedis } from './support/redis-requirement.js';

const swc = JSON.parse(readFileSync(new URL('../.swcrc', import.meta.url), 'utf8'));

/** @type {import('jest').Config} */
export default {
  rootDir: '..',
  testEnvironment: 'node',
  testRegex: ['test/chaos/.*\\.chaos-spec\\.ts$'],
  testPathIgnorePatterns: ['/node_modules/', ...ignoredWithoutRedis(['\\.chaos-spec\\.ts$'], 'the chaos suites')],
  globalSetup: '<rootDir>/test/chaos/global-setup.js',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': ['@swc/jest', swc] },
  testTimeout: 60_000,
};
