// Compiles the app once before the e2e run, so process suites can spawn `node dist/main.js` as users run it.
import { execFileSync } from 'node:child_process';

/** Runs `tsc -p <project>`; quiet on success, and on failure the compiler's own output says what is wrong. */
export function compile(project, rootDir, needed) {
  try {
    execFileSync('npx', ['tsc', '-p', project], { cwd: rootDir, stdio: 'pipe', encoding: 'utf8' });
  } catch (error) {
    const { stdout = '', stderr = '' } = /** @type {{ stdout?: string, stderr?: string }} */ (error);
    process.stderr.write(`\nnpx tsc -p ${project} failed: ${needed}\n${stdout}${stderr}\n`);
    throw error;
  }
}

/** @param {import('jest').Config} _globalConfig @param {{ rootDir: string }} projectConfig */
export default function globalSetup(_globalConfig, projectConfig) {
  compile('tsconfig.build.json', projectConfig.rootDir, 'the e2e suites need dist/');
}
