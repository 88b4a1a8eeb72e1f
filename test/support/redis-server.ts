import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'redis';

/**
 * A throwaway redis-server from PATH on a free loopback port; can be killed and restarted. No persistence, unless
 * `persistent`: then every write is in its append-only file before it is acknowledged (appendfsync always), so a
 * SIGKILL loses nothing and a restart comes back with the data.
 */
export class RedisTestServer {
  private process?: ChildProcess;

  private constructor(
    readonly port: number,
    private readonly dataDir?: string,
  ) {}

  static async start({ persistent = false }: { persistent?: boolean } = {}): Promise<RedisTestServer> {
    const server = new RedisTestServer(await freePort(), persistent ? mkdtempSync(join(tmpdir(), 'redis-test-')) : undefined);
    await server.restart();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts (again) on the same port, resolving once Redis accepts connections. */
  async restart(): Promise<void> {
    const persistence = this.dataDir ? ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', this.dataDir] : ['--appendonly', 'no'];
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', ...persistence], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.process = child;
    await new Promise<void>((resolve, reject) => {
      let output = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output}`)));
    });
  }

  /** Empties every database: what the fleet shares (answers, the circuit, rate limits) starts afresh. */
  async flushAll(): Promise<void> {
    const client = createClient({ url: this.url });
    await client.connect();
    try {
      await client.flushAll();
    } finally {
      await client.quit();
    }
  }

  /** SIGKILL: the connection drops the way it does when Redis crashes. */
  async kill(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    this.process = undefined;
  }

  /** SIGSTOP: the connection stays open and nothing answers, like a Redis that hangs. */
  pause(): void {
    this.process?.kill('SIGSTOP');
  }

  resume(): void {
    this.process?.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    await this.kill();
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}
