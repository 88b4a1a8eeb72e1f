// Failover seams a review found, over real HTTP (the app as main.ts builds it, the fake upstream serving A and B):
// each failed before its fix.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { FakeHfUpstream } from './support/fake-hf-upstream.js';
import { ask, breakerEntry, getHealth } from './support/http.js';
import { FAIL_THRESHOLD, KNOWN_QUESTIONS, startTestApp, type TestApp } from './support/test-app.js';

const A = 'test-org/model-a';
const B = 'test-org/model-b';
const ANSWER_B = 'B says: one trial call goes through while the circuit is half-open [1].';

interface Answer {
  answer: string;
  source: string;
  degraded: boolean;
  fallbackReason: string | null;
  model?: string;
  failover?: Array<{ model: string; reason: string }>;
}

let upstream: FakeHfUpstream;
let testApp: TestApp | undefined;
let n = 0;
const freshQuestion = () => `${KNOWN_QUESTIONS[++n % KNOWN_QUESTIONS.length]} (review question ${n})`;

beforeAll(async () => {
  upstream = await FakeHfUpstream.start();
});
beforeEach(() => upstream.reset());
afterEach(async () => {
  await testApp?.close();
  testApp = undefined;
});
afterAll(async () => upstream?.close());

async function start(env: Record<string, string>): Promise<string> {
  testApp = await startTestApp({ HF_ENDPOINT_URL: upstream.url, HF_MODEL: A, HF_FALLBACK_MODELS: B, ...env });
  return testApp.url;
}

describe('CIRCUIT_BREAKER_TIMEOUT_SECONDS = ASSISTANT_DEADLINE_SECONDS (as shipped: 30 and 30), A hangs', () => {
  it("A's time-outs count, its circuit opens after the threshold, and then B answers", async () => {
    // 1 s and 1 s: the shipped 30/30 ratio, scaled down.
    const url = await start({ CIRCUIT_BREAKER_TIMEOUT_SECONDS: '1', ASSISTANT_DEADLINE_SECONDS: '1' });
    upstream.setFault({ kind: 'hang' }, { model: A });
    upstream.setFault({ kind: 'ok', answer: ANSWER_B }, { model: B });

    const answers: Answer[] = [];
    for (let i = 0; i < FAIL_THRESHOLD + 1; i++) answers.push((await ask<Answer>(url, { query: freshQuestion() })).body);
    const entryA = breakerEntry((await getHealth(url, '/circuit-breaker')).body, 'huggingface');

    expect({
      aFailures: entryA?.stats.failures,
      aState: entryA?.state,
      lastAnswer: { source: answers.at(-1)?.source, model: answers.at(-1)?.model },
      callsToB: upstream.callsFor(B),
    }).toEqual({ aFailures: FAIL_THRESHOLD, aState: 'open', lastAnswer: { source: 'llm', model: B }, callsToB: 1 });
  }, 30_000);
});

describe('hedged JSON, the first target wins the race and is then cut mid-stream', () => {
  it('B, asked as the hedge and aborted when A looked like answering, is asked again and answers', async () => {
    const url = await start({ HF_HEDGE_AFTER_SECONDS: '0.3', CIRCUIT_BREAKER_TIMEOUT_SECONDS: '5', ASSISTANT_DEADLINE_SECONDS: '10' });
    // A: first token at ~500 ms (after the 300 ms hedge went out), then the connection is cut.
    upstream.setFault({ kind: 'cutMidStream', latencyMs: 500, afterTokens: 1, answer: 'A starts then dies' }, { model: A });
    // B: healthy, but its first token would come at ~300 + 800 ms, after A's.
    upstream.setFault({ kind: 'ok', answer: ANSWER_B, latencyMs: 800 }, { model: B });

    const { body } = await ask<Answer>(url, { query: freshQuestion() });

    expect({ source: body.source, degraded: body.degraded, fallbackReason: body.fallbackReason, model: body.model }).toEqual({
      source: 'llm',
      degraded: false,
      fallbackReason: null,
      model: B,
    });
  }, 30_000);
});

describe('hedging, the hedge B fails while A is still on its way, then A answers', () => {
  it('the answer from A carries no failover entry for the later target B', async () => {
    const url = await start({ HF_HEDGE_AFTER_SECONDS: '0.3', CIRCUIT_BREAKER_TIMEOUT_SECONDS: '5' });
    upstream.setFault({ kind: 'ok', answer: 'A answers late.', latencyMs: 1000 }, { model: A });
    upstream.setFault({ kind: 'error500' }, { model: B });

    const { body } = await ask<Answer>(url, { query: freshQuestion() });

    expect({ model: body.model, failover: body.failover }).toEqual({ model: A, failover: undefined });
  }, 30_000);
});
