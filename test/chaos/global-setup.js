// The chaos suite runs the app (dist/) and the upstream simulator (dist-bench/) as processes of their own.
import { run } from '../global-setup.js';

/** @param {import('jest').Config} _globalConfig @param {{ rootDir: string }} projectConfig */
export default function globalSetup(_globalConfig, projectConfig) {
  run(['nest', 'build'], projectConfig.rootDir, 'the chaos suite needs dist/');
  run(['tsc', '-p', 'tsconfig.bench.json'], projectConfig.rootDir, 'the chaos suite needs the simulator in dist-bench/');
}
