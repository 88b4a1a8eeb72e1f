// The chaos suite runs the app (dist/) and the upstream simulator (dist-bench/) as processes of their own.
import { compile } from '../global-setup.js';

/** @param {import('jest').Config} _globalConfig @param {{ rootDir: string }} projectConfig */
export default function globalSetup(_globalConfig, projectConfig) {
  compile('tsconfig.build.json', projectConfig.rootDir, 'the chaos suite needs dist/');
  compile('tsconfig.bench.json', projectConfig.rootDir, 'the chaos suite needs the simulator in dist-bench/');
}
