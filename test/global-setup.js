// Compiles the app once before the e2e run, so process suites can spawn `node dist/main.js` as users run it.
import { execFileSync } from 'node:child_process';

/** @param {import('jest').Config} _globalConfig @param {{ rootDir: string }} projectConfig */
export default function globalSetup(_globalConfig, projectConfig) {
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: projectConfig.rootDir, stdio: 'pipe', encoding: 'utf8' });
  } catch (error) {
    // Quiet on success; on failure the compiler's own output says what is wrong.
    const { stdout = '', stderr = '' } = /** @type {{ stdout?: string, stderr?: string }} */ (error);
    process.stderr.write(`\nnpx tsc -p tsconfig.build.json failed: the e2e suites need dist/\n${stdout}${stderr}\n`);
    throw error;
  }
}
