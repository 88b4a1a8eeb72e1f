// Builds the app once before the e2e run (`nest build`, as `npm run build` does), so process suites can
// spawn `node dist/main.js` as users run it.
import { execFileSync } from 'node:child_process';

/** Runs `npx <command...>`; quiet on success, and on failure the tool's own output says what is wrong. */
export function run(command, rootDir, needed) {
  try {
    execFileSync('npx', command, { cwd: rootDir, stdio: 'pipe', encoding: 'utf8' });
  } catch (error) {
    const { stdout = '', stderr = '' } = /** @type {{ stdout?: string, stderr?: string }} */ (error);
    process.stderr.write(`\nnpx ${command.join(' ')} failed: ${needed}\n${stdout}${stderr}\n`);
    throw error;
  }
}

/** @param {import('jest').Config} _globalConfig @param {{ rootDir: string }} projectConfig */
export default function globalSetup(_globalConfig, projectConfig) {
  run(['nest', 'build'], projectConfig.rootDir, 'the e2e suites need dist/');
}
