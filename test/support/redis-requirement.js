// Shared by the jest configs: suites that need redis-server run only where it is on PATH.
import { execFileSync } from 'node:child_process';

function redisServerOnPath() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * The test path patterns to ignore for lack of redis-server: none when it is there; with CI=true its absence
 * fails the run; elsewhere one loud line says which suites do not run.
 */
export function ignoredWithoutRedis(patterns, suites) {
  if (redisServerOnPath()) return [];
  if (process.env.CI === 'true')
    throw new Error('redis-server is not on PATH and CI=true: the Redis suites cannot run (apt-get install -y redis-server)');
  console.warn(`\n!!!!! redis-server is not on PATH: ${suites} DO NOT RUN (apt-get install -y redis-server) !!!!!\n`);
  return patterns;
}
