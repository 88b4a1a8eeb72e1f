// e2e suites: the real HTTP app, a real redis-server from PATH, the fake HF upstream on loopback.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const swc = JSON.parse(readFileSync(new URL('../.swcrc', import.meta.url), 'utf8'));

function hasRedisServer() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const redisSuites = [];
if (!hasRedisServer()) {
  if (process.env.CI === 'true') throw new Error('redis-server is not on PATH and CI=true: the Redis suites cannot run (apt-get install -y redis-server)');
  console.warn('\n!!!!! redis-server is not on PATH: the *.redis.e2e-spec.ts suites DO NOT RUN (apt-get install -y redis-server) !!!!!\n');
  redisSuites.push('\\.redis\\.e2e-spec\\.ts$');
}

/** @type {import('jest').Config} */
export default {
  rootDir: '..',
  testEnvironment: 'node',
  testRegex: ['test/.*\\.e2e-spec\\.ts$', 'test/support/.*\\.spec\\.ts$'],
  testPathIgnorePatterns: ['/node_modules/', ...redisSuites],
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': ['@swc/jest', swc] },
  testTimeout: 20_000,
  globalSetup: '<rootDir>/test/global-setup.js',
};
