import { type ChildProcess, spawn } from 'node:child_process';
import { freePort } from './redis-server.js';

/** How the process ended: `code` when it exited by itself, `signal` when a signal killed it. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface AppProcess {
  /** http://127.0.0.1:PORT */
  url: string;
  process: ChildProcess;
  /** Everything written to stdout and stderr so far, interleaved as it arrived, colours removed. */
  output(): string;
  exited: Promise<ProcessExit>;
  /** Sends `signal` (default SIGKILL) unless the process has already exited; resolves once it has. */
  kill(signal?: NodeJS.Signals): Promise<ProcessExit>;
}

// The repo root: npm runs tests, benchmarks and the demo from there (this file is also compiled to dist-bench/).
const ROOT_DIR = process.cwd();
const MAIN = 'dist/main.js';
const READY_POLL_MS = 50;
const READY_DEADLINE_MS = 15_000;
// Colour codes start with the ESC control character; matching it is the point.
// eslint-disable-next-line no-control-regex
const ANSI_ESCAPE = /\u001b\[[0-9;]*m/g;

const running = new Set<AppProcess>();

/**
 * `node dist/main.js` (compiled by test/global-setup.js) as an operator starts it: NODE_ENV=test so no env file
 * is read, HOST=127.0.0.1, a free PORT, nothing inherited from the test runner's environment but PATH, so no
 * real HF token or Redis can leak in. `env` wins over all of it (a test can pass a bad PORT). Does not wait.
 */
export interface SpawnOptions {
  /** 'discard' sends the app's logs to /dev/null: a pipe nobody drains fast enough would block its writes. */
  output?: 'collect' | 'discard';
  /** The process's soft limit on open files (`ulimit -n`), as a container's or a systemd unit's would be. */
  openFiles?: number;
}

export async function spawnApp(
  env: Record<string, string> = {},
  { output: keep = 'collect', openFiles }: SpawnOptions = {},
): Promise<AppProcess> {
  const port = String(await freePort());
  const fullEnv: Record<string, string> = { PATH: process.env['PATH'] ?? '', NODE_ENV: 'test', HOST: '127.0.0.1', PORT: port, ...env };
  const stdio = keep === 'collect' ? 'pipe' : 'ignore';
  // With a descriptor limit, a shell sets it and then becomes the app (exec), so signals and the exit reach the app.
  const [command, args] =
    openFiles === undefined
      ? [process.execPath, [MAIN]]
      : ['sh', ['-c', `ulimit -n ${openFiles} && exec "$0" "$1"`, process.execPath, MAIN]];
  const child = spawn(command, args, { cwd: ROOT_DIR, env: fullEnv, stdio: ['ignore', stdio, stdio] });
  let output = '';
  const collect = (chunk: Buffer): void => {
    output += chunk.toString('utf8');
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  // 'close' (not 'exit'): by then both pipes are drained, so output() holds the last lines too.
  const exited = new Promise<ProcessExit>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  const app: AppProcess = {
    url: `http://${fullEnv['HOST']}:${fullEnv['PORT']}`,
    process: child,
    output: () => output.replace(ANSI_ESCAPE, ''),
    exited,
    kill: (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  running.add(app);
  void exited.then(() => running.delete(app));
  return app;
}

/** Spawns the app and resolves once `GET /health/ready` answers 200; rejects with its output if it exits or hangs. */
export async function startAppProcess(env: Record<string, string> = {}, options: SpawnOptions = {}): Promise<AppProcess> {
  const app = await spawnApp(env, options);
  let exit: ProcessExit | undefined;
  void app.exited.then((result) => (exit = result));
  const deadline = Date.now() + READY_DEADLINE_MS;
  while (Date.now() < deadline) {
    if (exit) throw new Error(`app exited (${JSON.stringify(exit)}) before it was ready:\n${app.output()}`);
    if (await isReady(app.url)) return app;
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
  await app.kill();
  throw new Error(`app not ready after ${READY_DEADLINE_MS} ms:\n${app.output()}`);
}

/** For afterAll: kills every app process still running, so none outlives the suite. */
export async function killAppProcesses(): Promise<void> {
  await Promise.all([...running].map((app) => app.kill('SIGKILL')));
}

async function isReady(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(1000) });
    await response.arrayBuffer();
    return response.status === 200;
  } catch {
    return false;
  }
}
