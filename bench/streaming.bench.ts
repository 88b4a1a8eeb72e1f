import { InferenceClient } from '@huggingface/inference';
import { FakeHfUpstream } from '../test/support/fake-hf-upstream.js';
import { startAppProcess } from '../test/support/app-process.js';
import { pinCpus } from '../test/support/cpu-affinity.js';
import { fixed, markdownTable, percentile } from './stats.js';

// Streamed answers: how much later the app's first token reaches its client than the model's first token reaches a
// client of the model's own, measured alternately in one run against the same fake model (healthy path, no cache).

/** The model's own time to first token: the fake waits this long before its first chunk. */
const MODEL_FIRST_TOKEN_MS = 20;
const WARM_UP = 100;
const SAMPLES = 400;
/** The goal: the app adds at most this much to the model's time to first token, at p99. */
const GOAL_P99_MS = 5;

export interface StreamingBenchResult {
  samples: number;
  modelFirstTokenMs: number;
  /** A client of the model itself (the same @huggingface/inference client the app uses): request → first chunk. */
  direct: { p50Ms: number; p99Ms: number };
  /** A client of the app: request → first byte (the excerpts event) and → first token event. */
  viaApp: { firstByteP50Ms: number; firstByteP99Ms: number; firstTokenP50Ms: number; firstTokenP99Ms: number };
  /** App p99 time to first token minus the model's own p99. */
  addedP99Ms: number;
  goalMet: boolean;
  pinning: string;
}

async function directFirstTokenMs(client: InferenceClient, n: number): Promise<number> {
  const started = performance.now();
  const stream = client.chatCompletionStream({
    model: 'bench/model',
    messages: [{ role: 'user', content: `direct question ${n}` }],
    max_tokens: 64,
  });
  let firstMs = Number.NaN;
  for await (const chunk of stream) {
    if (Number.isNaN(firstMs) && typeof chunk.choices?.[0]?.delta?.content === 'string' && chunk.choices[0].delta.content !== '') {
      firstMs = performance.now() - started;
    }
  }
  return firstMs;
}

async function appFirstTokenMs(url: string, n: number): Promise<{ firstByteMs: number; firstTokenMs: number }> {
  const started = performance.now();
  const response = await fetch(`${url}/assistant/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query: `How does the circuit breaker count consecutive failures? (streamed ${n})` }),
  });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = '';
  let firstByteMs = Number.NaN;
  let firstTokenMs = Number.NaN;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (Number.isNaN(firstByteMs)) firstByteMs = performance.now() - started;
    text += value;
    if (Number.isNaN(firstTokenMs) && text.includes('event: token')) firstTokenMs = performance.now() - started;
  }
  if (!text.includes('"source":"llm"')) throw new Error(`a streamed answer did not come from the model: ${text.slice(-300)}`);
  return { firstByteMs, firstTokenMs };
}

export async function runStreamingBench(): Promise<StreamingBenchResult> {
  const upstream = await FakeHfUpstream.start();
  upstream.setFault({
    kind: 'ok',
    latencyMs: MODEL_FIRST_TOKEN_MS,
    tokenIntervalMs: 1,
    answer: 'One trial call goes through while the circuit is half-open.',
  });
  const app = await startAppProcess(
    { HF_ENDPOINT_URL: upstream.url, CIRCUIT_BREAKER_TIMEOUT_SECONDS: '5', SHUTDOWN_DRAIN_SECONDS: '0', LOG_LEVEL: 'warn' },
    { output: 'discard' },
  );
  const pinning = pinCpus(app.process.pid ?? 0, [process.pid]);
  const client = new InferenceClient(undefined, { endpointUrl: upstream.url });
  try {
    const direct: number[] = [];
    const firstBytes: number[] = [];
    const firstTokens: number[] = [];
    for (let n = 0; n < WARM_UP + SAMPLES; n++) {
      // Alternated, so drift (GC, JIT, the machine's other load) reaches both sides alike.
      const model = await directFirstTokenMs(client, n);
      const viaApp = await appFirstTokenMs(app.url, n);
      if (n < WARM_UP) continue;
      direct.push(model);
      firstBytes.push(viaApp.firstByteMs);
      firstTokens.push(viaApp.firstTokenMs);
    }
    for (const samples of [direct, firstBytes, firstTokens]) samples.sort((a, b) => a - b);
    const addedP99Ms = percentile(firstTokens, 99) - percentile(direct, 99);
    return {
      samples: SAMPLES,
      modelFirstTokenMs: MODEL_FIRST_TOKEN_MS,
      direct: { p50Ms: percentile(direct, 50), p99Ms: percentile(direct, 99) },
      viaApp: {
        firstByteP50Ms: percentile(firstBytes, 50),
        firstByteP99Ms: percentile(firstBytes, 99),
        firstTokenP50Ms: percentile(firstTokens, 50),
        firstTokenP99Ms: percentile(firstTokens, 99),
      },
      addedP99Ms,
      goalMet: addedP99Ms <= GOAL_P99_MS,
      pinning,
    };
  } finally {
    await app.kill('SIGKILL');
    await upstream.close();
  }
}

export function streamingTables(result: StreamingBenchResult): string {
  return (
    markdownTable(
      [
        `streamed answers (model's first token after ${result.modelFirstTokenMs} ms; ${result.samples} each, alternated)`,
        'p50 ms',
        'p99 ms',
        'goal',
      ],
      [
        ["the model's own client: request → first token", fixed(result.direct.p50Ms, 1), fixed(result.direct.p99Ms, 1), ''],
        [
          'the app: request → first byte (excerpts event)',
          fixed(result.viaApp.firstByteP50Ms, 1),
          fixed(result.viaApp.firstByteP99Ms, 1),
          '',
        ],
        [
          'the app: request → first token event',
          fixed(result.viaApp.firstTokenP50Ms, 1),
          fixed(result.viaApp.firstTokenP99Ms, 1),
          `adds ≤ ${GOAL_P99_MS} ms at p99: ${fixed(result.addedP99Ms, 1)} ms, ${result.goalMet ? 'met' : 'MISSED'}`,
        ],
      ],
    ) + `\n(${result.pinning})`
  );
}
