import { type ChildProcess, spawn } from 'node:child_process';
import type { Fault, UpstreamStats } from '../support/fake-hf-upstream.js';
import { freePort } from '../support/redis-server.js';

/**
 * The fake upstream in its own process, driven through its admin routes, as a real upstream would be: the load
 * generator then does not share an event loop with the upstream's own sockets.
 */
export class UpstreamProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
  ) {}

  /** Runs the compiled simulator (test/jest-chaos.config.js builds dist-bench/ first). */
  static async start(): Promise<UpstreamProcess> {
    const port = await freePort();
    const child = spawn(process.execPath, ['dist-bench/test/support/fake-hf-upstream.js'], {
      env: { PATH: process.env['PATH'] ?? '', FAKE_HF_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('listening') && resolve());
      child.once('exit', (code) => reject(new Error(`fake upstream exited with ${code}`)));
    });
    return new UpstreamProcess(child, `http://127.0.0.1:${port}`);
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  async setFault(fault: Fault): Promise<void> {
    const response = await fetch(`${this.url}/__admin/fault`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(fault),
    });
    if (response.status !== 204) throw new Error(`setting fault ${fault.kind} failed: ${response.status} ${await response.text()}`);
  }

  async stats(): Promise<UpstreamStats> {
    return (await (await fetch(`${this.url}/__admin/stats`)).json()) as UpstreamStats;
  }

  async calls(): Promise<number> {
    return (await this.stats()).calls;
  }

  /** When the chat calls arrived at or after `since` (epoch ms, this machine's clock), oldest first. */
  async callTimes(since: number): Promise<number[]> {
    return ((await (await fetch(`${this.url}/__admin/call-times?since=${since}`)).json()) as { times: number[] }).times;
  }

  /** Resolves once no request is left unanswered upstream (a hung one leaves only when its connection closes). */
  async waitForInFlight(n: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.stats()).inFlight > n) {
      if (Date.now() > deadline) throw new Error(`upstream still has requests in flight after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGKILL');
    await exited;
  }
}
