// A fake HuggingFace/TGI upstream on loopback: speaks POST /v1/chat/completions and injects faults on demand.
// A request with `"stream": true` gets a text/event-stream answer as TGI streams it (ChatCompletionChunk events, then
// `data: [DONE]`); the stream faults below break such a stream mid-way. One fake can stand for several model targets
// behind one endpoint: a fault set for a model (the request body's `model`) overrides the default for that model's calls.
import { randomUUID } from 'node:crypto';
import { once, setMaxListeners } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';

/** Extra delay before the fault acts: latencyMs plus a uniform random 0..jitterMs. */
export interface Timing {
  latencyMs?: number;
  jitterMs?: number;
}

/**
 * Pacing of a streamed answer (request body `"stream": true`). A non-streaming answer ignores it: Timing alone
 * delays that one.
 */
export interface StreamTiming {
  /** Wait before each content token: 0 by default (250 for slowTokens). */
  tokenIntervalMs?: number;
  /**
   * While a stream waits (between tokens, or stalled), write the SSE comment `:` this often, as TGI's axum server
   * does every 15 s. Off by default. The hf client skips comments, so they only keep bytes flowing.
   */
  keepAliveMs?: number;
}

/**
 * Where a mid-stream fault strikes: after this many content tokens (default 2; the role chunk is no token). Capped at
 * the answer's token count, so the fault always comes before the finish chunk.
 */
export interface MidStream {
  afterTokens?: number;
}

/**
 * Each stream fault, for a NON-streaming request: slowTokens answers as ok (tokenIntervalMs paces only streams);
 * stallBeforeFirstToken and stallMidStream as hang; cutMidStream as reset; errorMidStream as error500 with its own
 * error text and type; malformedChunk as malformed.
 */
export type StreamFault =
  /** ok with tokenIntervalMs defaulting to 250 ms: slow but steady tokens. */
  | ({ kind: 'slowTokens'; answer?: string } & Timing & StreamTiming)
  /** 200 and the event-stream headers, then nothing: the socket stays open until the client aborts or close() runs. */
  | ({ kind: 'stallBeforeFirstToken' } & Timing & StreamTiming)
  /** After `afterTokens` tokens nothing more comes (keep-alive comments aside): the socket stays open as above. */
  | ({ kind: 'stallMidStream'; answer?: string } & MidStream & Timing & StreamTiming)
  /** After `afterTokens` tokens (all flushed) the socket is destroyed: the chunked body never ends. */
  | ({ kind: 'cutMidStream'; answer?: string } & MidStream & Timing & StreamTiming)
  /**
   * After `afterTokens` tokens an error event, then `data: [DONE]` and a clean end, as TGI does when generation fails
   * mid-stream. errorShape 'chat' (default) is what TGI's /v1/chat/completions really sends,
   * `{"error": {"message": error, "http_status_code": 422}}` (its OpenaiErrorEvent, not in the OpenAPI spec);
   * 'errorResponse' is the spec's ErrorResponse `{"error": error, "error_type": errorType}`, as TGI's
   * /generate_stream sends it.
   */
  | ({
      kind: 'errorMidStream';
      answer?: string;
      error?: string;
      errorType?: string;
      errorShape?: 'chat' | 'errorResponse';
    } & MidStream &
      Timing &
      StreamTiming)
  /** After `afterTokens` tokens one data line that is not JSON; the stream then goes on and ends normally. */
  | ({ kind: 'malformedChunk'; answer?: string } & MidStream & Timing & StreamTiming);

/**
 * A streaming request gets a stream under ok and the stream faults; under every other leaf fault it gets the same
 * status and JSON body as a non-streaming one (TGI also answers a failure before the first token that way).
 */
export type Fault =
  | ({ kind: 'ok'; answer?: string } & Timing & StreamTiming)
  | ({ kind: 'loading503'; estimatedTimeSeconds?: number } & Timing)
  | ({ kind: 'rateLimited429'; retryAfterSeconds?: number; ratelimitSeconds?: number } & Timing)
  | RawFault
  | ({ kind: TgiErrorKind | RouterErrorKind | BrokenKind } & Timing)
  | StreamFault
  | { kind: 'flapping'; every: number; failWith?: Fault }
  | { kind: 'sequence'; faults: Fault[] };

/**
 * An answer replayed as it was seen in the wild, for shapes the other faults do not make: this status, `body` sent
 * as JSON (a string as text/plain; none: an empty body), and these headers (they may override content-type). A
 * streaming request gets the same answer.
 */
export interface RawFault extends Timing {
  kind: 'raw';
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type FaultKind = Fault['kind'];
type TgiErrorKind = keyof typeof TGI_ERRORS;
type RouterErrorKind = keyof typeof ROUTER_ERRORS;
type BrokenKind = 'hang' | 'reset' | 'malformed' | 'truncated' | 'missingFields';
type LeafFault = Exclude<Fault, { kind: 'flapping' | 'sequence' }>;
/** The leaves that answer a streaming request with a stream. */
type StreamingFault = Extract<LeafFault, { kind: 'ok' | StreamFault['kind'] }>;
type MidStreamFault = Extract<StreamFault, { kind: 'stallMidStream' | 'cutMidStream' | 'errorMidStream' | 'malformedChunk' }>;

/**
 * How a stream ended: 'open' while it runs (or stalls); 'done' when the fake wrote `data: [DONE]` and ended it (an
 * errorMidStream or malformedChunk stream too); 'cut' by cutMidStream; 'abortedByClient' when the client closed the
 * connection first; 'serverClosed' by close().
 */
export type StreamOutcome = 'open' | 'done' | 'cut' | 'abortedByClient' | 'serverClosed';

export interface StreamRecord {
  /** Content tokens written so far (the role, finish and usage chunks are no tokens). */
  tokens: number;
  outcome: StreamOutcome;
}

export interface RecordedRequest {
  headers: IncomingHttpHeaders;
  body: unknown;
}

export interface UpstreamStats {
  calls: number;
  openSockets: number;
  inFlight: number;
  peakInFlight: number;
  fault: Fault;
  /** Streamed answers begun (event-stream headers sent) since reset(). */
  streams: number;
  /** Streams whose connection is still up and that the fake has not ended (a stalled one stays here). */
  openStreams: number;
  /** Streams whose connection the client closed before the fake ended them, since reset(): the proof of an abort. */
  streamsAbortedByClient: number;
  /** Content tokens written over all streams since reset(). */
  tokensWritten: number;
  /** The stream begun last, null when none since reset(). */
  lastStream: StreamRecord | null;
  /** Chat requests (streamed or not) whose client closed the connection before the fake answered them, since reset(). */
  abortedByClient: number;
  /** Per request-body `model`, for every model called or given a fault of its own since reset(). */
  models: Record<string, ModelStats>;
}

/** What one model (the request body's `model`; `tgi` when it has none) has seen since reset(). */
export interface ModelStats {
  calls: number;
  /** Its requests whose response has not finished and whose connection is still up. */
  inFlight: number;
  /** Its requests whose client closed the connection before the fake answered them (a hedge's loser, a time-out). */
  abortedByClient: number;
  /** Its own fault, or the default when it has none. */
  fault: Fault;
}

/** Options of setFault: with `model`, the fault applies to that model's calls only, overriding the default. */
export interface FaultTarget {
  model?: string;
}

/** TGI's ErrorResponse {error, error_type}, keyed by fault. */
const TGI_ERRORS = {
  error500: [500, 'Request failed during generation: Server error: CUDA out of memory', 'generation'],
  badRequest: [
    400,
    'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`',
    'validation',
  ],
  unprocessable: [422, 'Input validation error: `temperature` must be strictly positive', 'validation'],
  payloadTooLarge: [413, 'Payload Too Large: request body exceeds the 2000000 bytes limit', 'validation'],
  /** A model without a chat template: every chat request fails alike. */
  templateError: [422, 'Template error: template not found', 'template_error'],
  /** HF_MAX_NEW_TOKENS above the model's own limit (as TGI words it): every request fails alike, whatever its prompt. */
  tokenLimit: [
    422,
    'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 12 `inputs` tokens and 8192 `max_new_tokens`',
    'validation',
  ],
  requestTimeout: [408, 'Request timed out while waiting for a generation slot', 'timeout'],
} as const satisfies Record<string, readonly [number, string, string]>;

/** Shapes the HF router/Hub answers with before TGI is involved. */
const ROUTER_ERRORS = {
  unknownModel: [
    400,
    (model: string) => ({
      error: {
        message: `The requested model '${model}' is not supported by any provider you have enabled.`,
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_supported',
      },
    }),
  ],
  unauthorized: [401, () => ({ error: 'Invalid credentials in Authorization header' })],
  paymentRequired: [
    402,
    () => ({
      error:
        'You have exceeded your monthly included credits for Inference Providers. Subscribe to PRO to get 20x more monthly included credits.',
    }),
  ],
  forbidden: [
    403,
    () => ({
      error: 'This authentication method does not have sufficient permissions to call Inference Providers on behalf of user fake-user',
    }),
  ],
} as const satisfies Record<string, readonly [number, (model: string) => object]>;

const STREAM_FAULT_KINDS = [
  'slowTokens',
  'stallBeforeFirstToken',
  'stallMidStream',
  'cutMidStream',
  'errorMidStream',
  'malformedChunk',
] as const satisfies ReadonlyArray<StreamFault['kind']>;

const FAULT_KINDS: ReadonlySet<string> = new Set<FaultKind>([
  ...(['ok', 'loading503', 'rateLimited429', 'raw', 'flapping', 'sequence'] as const),
  ...(['hang', 'reset', 'malformed', 'truncated', 'missingFields'] as const),
  ...STREAM_FAULT_KINDS,
  ...(Object.keys(TGI_ERRORS) as TgiErrorKind[]),
  ...(Object.keys(ROUTER_ERRORS) as RouterErrorKind[]),
]);

const CHAT_PATH = '/v1/chat/completions';
/** Leaves whose answer the fake itself breaks off (the socket destroyed) when the request does not stream. */
const BROKEN_BY_FAKE: ReadonlySet<FaultKind> = new Set<FaultKind>(['reset', 'cutMidStream', 'truncated']);

/** One chat request while it is open: what its 'close' needs to know to tell a client's abort from the fake's doing. */
interface ChatCall {
  /** reset() count when it arrived: a request from before a reset no longer counts. */
  epoch: number;
  closed: boolean;
  brokenByFake: boolean;
  /** Its model's counters, once the body named it (a request whose client left mid-upload has none). */
  model?: Omit<ModelStats, 'fault'>;
  stream?: StreamRecord;
}
const OK: Fault = { kind: 'ok' };
/** Arrival times kept for callTimesSince: enough for any scenario's window, bounded under a long load. */
const CALL_TIMES_KEPT = 10_000;
const FINGERPRINT = '3.3.6-sha-fake';
const DEFAULT_AFTER_TOKENS = 2;
const SLOW_TOKEN_INTERVAL_MS = 250;
const STREAM_ERROR = 'Request failed during generation: Server error: CUDA out of memory';
/** TGI's InferError::into_openai_event puts 422 in every in-stream error, whatever went wrong. */
const CHAT_STREAM_ERROR_STATUS = 422;
/** Not JSON: the id's string never closes. */
const MALFORMED_CHUNK =
  '{"id":"chatcmpl-broken","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"';

export class FakeHfUpstream {
  calls = 0;
  /** TCP connections accepted since start: with keep-alive, far fewer than calls. */
  connections = 0;
  /** The most chat calls in flight at once since the fault was last set. */
  peakInFlight = 0;
  /** Requests whose response has not finished and whose connection is still up (a hung call stays here). */
  inFlight = 0;
  lastRequest: RecordedRequest | undefined;
  /** Streamed answers begun since reset(). */
  streams = 0;
  /** Streams still running or stalled, their connection up. */
  openStreams = 0;
  /** Streams whose client closed the connection before the fake ended them, since reset(). */
  streamsAbortedByClient = 0;
  /** Content tokens written over all streams since reset(). */
  tokensWritten = 0;
  /** The stream begun last; its record keeps changing while it runs. */
  lastStream: StreamRecord | null = null;
  /** When each chat call arrived (epoch ms), oldest first: the last CALL_TIMES_KEPT since reset(). */
  private readonly callTimes: number[] = [];
  private fault: Fault = OK;
  private callsSinceFault = 0;
  /** Faults set for one model, each with its own call count for sequence and flapping; cleared by reset(). */
  private readonly modelFaults = new Map<string, { fault: Fault; callsSinceFault: number }>();
  private readonly modelCounts = new Map<string, Omit<ModelStats, 'fault'>>();
  /** Chat requests whose client closed the connection before the fake answered them, since reset(). */
  abortedByClient = 0;
  /** Bumped by reset(): a stream begun before it no longer adds to the counters. */
  private epoch = 0;
  private readonly sockets = new Set<Socket>();
  private readonly waiters = new Set<() => void>();
  private readonly lifetime = new AbortController();

  private constructor(private readonly server: Server) {
    // Every delayed answer waits on the lifetime signal: dozens at once under load is intended, not a leak.
    setMaxListeners(0, this.lifetime.signal);
    server.on('connection', (socket: Socket) => this.track(socket));
    // a bug in the fake must surface as a dropped connection in the test, not as an unhandled rejection
    server.on('request', (req: IncomingMessage, res: ServerResponse) => void this.route(req, res).catch(() => res.destroy()));
  }

  static async start(options: { port?: number } = {}): Promise<FakeHfUpstream> {
    const upstream = new FakeHfUpstream(createServer());
    await new Promise<void>((resolve, reject) => {
      upstream.server.once('error', reject).listen(options.port ?? 0, '127.0.0.1', resolve);
    });
    return upstream;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  get openSockets(): number {
    return this.sockets.size;
  }

  get stats(): UpstreamStats {
    return {
      calls: this.calls,
      openSockets: this.openSockets,
      inFlight: this.inFlight,
      peakInFlight: this.peakInFlight,
      fault: this.fault,
      streams: this.streams,
      openStreams: this.openStreams,
      streamsAbortedByClient: this.streamsAbortedByClient,
      tokensWritten: this.tokensWritten,
      lastStream: this.lastStream && { ...this.lastStream },
      abortedByClient: this.abortedByClient,
      models: Object.fromEntries([...new Set([...this.modelCounts.keys(), ...this.modelFaults.keys()])].map((m) => [m, this.statsFor(m)])),
    };
  }

  /** What calls for `model` (the request body's) have seen since reset(), and the fault they get. */
  statsFor(model: string): ModelStats {
    const counts = this.modelCounts.get(model) ?? { calls: 0, inFlight: 0, abortedByClient: 0 };
    return { ...counts, fault: this.modelFaults.get(model)?.fault ?? this.fault };
  }

  /** Chat calls whose body named `model` since reset(). */
  callsFor(model: string): number {
    return this.statsFor(model).calls;
  }

  /**
   * The fault every call gets, or with `{ model }` the fault that model's calls get (the default still serves the
   * others). Either way its sequence or flapping count starts again.
   */
  setFault(fault: Fault, target: FaultTarget = {}): void {
    if (target.model !== undefined) {
      this.modelFaults.set(target.model, { fault, callsSinceFault: 0 });
      return;
    }
    this.fault = fault;
    this.callsSinceFault = 0;
    this.peakInFlight = this.inFlight;
  }

  /** When the chat calls arrived at or after `since` (epoch ms), oldest first: when a circuit let its calls through. */
  callTimesSince(since = 0): number[] {
    return this.callTimes.filter((time) => time >= since);
  }

  reset(): void {
    this.setFault(OK);
    this.modelFaults.clear();
    this.modelCounts.clear();
    this.abortedByClient = 0;
    this.calls = 0;
    this.callTimes.length = 0;
    this.lastRequest = undefined;
    this.streams = 0;
    this.streamsAbortedByClient = 0;
    this.tokensWritten = 0;
    this.lastStream = null;
    this.epoch += 1;
  }

  /** Resolves once at most `n` sockets are open (idle keep-alive sockets count too); rejects after timeoutMs. */
  waitForOpenSockets(n: number, timeoutMs = 2000): Promise<void> {
    return this.waitUntil(
      () => this.openSockets <= n,
      timeoutMs,
      () => `${this.openSockets} open sockets (wanted <= ${n})`,
    );
  }

  /**
   * Resolves once at most `n` requests are still held open. The reliable proof that an aborted call closed its
   * socket: after an abort, undici (global fetch) opens a spare idle connection that lingers ~4 s.
   */
  waitForInFlight(n: number, timeoutMs = 2000): Promise<void> {
    return this.waitUntil(
      () => this.inFlight <= n,
      timeoutMs,
      () => `${this.inFlight} requests in flight (wanted <= ${n})`,
    );
  }

  /** Resolves once at least `n` chat requests have arrived: lets a test act while a call is known to be upstream. */
  waitForCalls(n: number, timeoutMs = 2000): Promise<void> {
    return this.waitUntil(
      () => this.calls >= n,
      timeoutMs,
      () => `${this.calls} calls (wanted >= ${n})`,
    );
  }

  /** Resolves once at least `n` chat requests naming `model` have arrived since reset(). */
  waitForCallsFor(model: string, n: number, timeoutMs = 2000): Promise<void> {
    return this.waitUntil(
      () => this.callsFor(model) >= n,
      timeoutMs,
      () => `${this.callsFor(model)} calls for ${model} (wanted >= ${n})`,
    );
  }

  /**
   * Resolves once at least `n` chat requests (of `model` only, when given) have been closed by their client before
   * the fake answered them, since reset(): the proof that the app gave a call up and closed its socket.
   */
  waitForAbortedByClient(n: number, target: FaultTarget = {}, timeoutMs = 2000): Promise<void> {
    const count = (): number => (target.model === undefined ? this.abortedByClient : this.statsFor(target.model).abortedByClient);
    const what = target.model === undefined ? 'requests' : `requests for ${target.model}`;
    return this.waitUntil(
      () => count() >= n,
      timeoutMs,
      () => `${count()} ${what} aborted by their client (wanted >= ${n})`,
    );
  }

  /** Resolves once at least `n` stream tokens have been written since reset(): lets a test act mid-stream. */
  waitForTokens(n: number, timeoutMs = 2000): Promise<void> {
    return this.waitUntil(
      () => this.tokensWritten >= n,
      timeoutMs,
      () => `${this.tokensWritten} tokens written (wanted >= ${n})`,
    );
  }

  /** Resolves once at least `n` streams have been closed by their client before they ended, since reset(). */
  waitForStreamsAbortedByClient(n: number, timeoutMs = 2000): Promise<void> {
    return this.waitUntil(
      () => this.streamsAbortedByClient >= n,
      timeoutMs,
      () => `${this.streamsAbortedByClient} streams aborted by their client (wanted >= ${n})`,
    );
  }

  private waitUntil(done: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!done()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`still ${describe()} after ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  private notifyWaiters(): void {
    for (const check of [...this.waiters]) check();
  }

  /** Stops listening and destroys every socket, hung ones included, so nothing keeps the process alive. */
  async close(): Promise<void> {
    this.lifetime.abort();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private track(socket: Socket): void {
    this.connections += 1;
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.notifyWaiters();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const route = `${req.method ?? ''} ${(req.url ?? '').split('?')[0]}`;
    const call: ChatCall = { epoch: this.epoch, closed: false, brokenByFake: false };
    // Only chat calls count as in flight: an admin request asking for stats must not count itself.
    if (route === `POST ${CHAT_PATH}`) {
      this.inFlight += 1;
      this.peakInFlight = Math.max(this.peakInFlight, this.inFlight);
      // 'close' fires both when the response is sent and when the connection drops before that
      res.once('close', () => {
        this.inFlight -= 1;
        this.closeChat(call, res);
        this.notifyWaiters();
      });
    }
    const raw = await readBody(req);
    switch (route) {
      case `POST ${CHAT_PATH}`:
        return this.answerChat(req, res, raw, call);
      case 'GET /health':
        return sendJson(res, 200);
      case 'GET /info':
        return sendJson(res, 200, INFO);
      case 'GET /__admin/stats':
        return sendJson(res, 200, this.stats);
      case 'GET /__admin/call-times':
        return sendJson(res, 200, { times: this.callTimesSince(Number(new URL(req.url ?? '', this.url).searchParams.get('since') ?? 0)) });
      case 'PUT /__admin/fault':
        return this.putFault(res, raw, new URL(req.url ?? '', this.url).searchParams.get('model') ?? undefined);
      case 'POST /__admin/reset':
        this.reset();
        return sendJson(res, 204);
      default:
        return sendJson(res, 404, { error: `no route for ${route}`, error_type: 'not_found' });
    }
  }

  /** `?model=` sets that model's fault (PUT /__admin/fault?model=x), as setFault(fault, { model }) does. */
  private putFault(res: ServerResponse, raw: string, model: string | undefined): void {
    const fault = parseJson(raw);
    if (!isFault(fault)) return void sendJson(res, 400, { error: 'body must be a Fault', error_type: 'validation' });
    this.setFault(fault, { model });
    sendJson(res, 204);
  }

  private async answerChat(req: IncomingMessage, res: ServerResponse, raw: string, call: ChatCall): Promise<void> {
    this.calls += 1;
    if (this.callTimes.push(Date.now()) > CALL_TIMES_KEPT) this.callTimes.shift();
    const body = parseJson(raw);
    this.lastRequest = { headers: req.headers, body };
    const fault = this.faultFor(modelOf(body), call);
    this.notifyWaiters();
    if (!(await this.delay(fault)) || res.destroyed) return;
    if (body === undefined)
      return void sendJson(res, 422, { error: 'Failed to deserialize the JSON body into the target type', error_type: 'validation' });
    if (isStreamRequest(body) && isStreamingFault(fault)) return this.stream(fault, res, body, call);
    // The fake's own breakages are not the client's aborts.
    call.brokenByFake = BROKEN_BY_FAKE.has(fault.kind);
    respond(fault, res, body);
  }

  /** Counts the call for its model and picks its leaf fault: the model's own fault if it has one, else the default. */
  private faultFor(model: string, call: ChatCall): LeafFault {
    const counts = this.modelCounts.get(model) ?? { calls: 0, inFlight: 0, abortedByClient: 0 };
    this.modelCounts.set(model, counts);
    counts.calls += 1;
    if (!call.closed) {
      counts.inFlight += 1;
      call.model = counts;
    }
    const own = this.modelFaults.get(model);
    if (own) return pickFault(own.fault, (own.callsSinceFault += 1));
    return pickFault(this.fault, (this.callsSinceFault += 1));
  }

  /** A chat response closed: by its end, by the fake breaking it, by close(), or by its client giving up. */
  private closeChat(call: ChatCall, res: ServerResponse): void {
    call.closed = true;
    if (call.model) call.model.inFlight -= 1;
    const byClient = !res.writableFinished && !call.brokenByFake && call.stream?.outcome !== 'cut' && !this.lifetime.signal.aborted;
    if (!byClient || call.epoch !== this.epoch) return;
    this.abortedByClient += 1;
    if (call.model) call.model.abortedByClient += 1;
  }

  /** Streams the answer token by token, breaking it as the fault says. */
  private async stream(fault: StreamingFault, res: ServerResponse, request: unknown, call: ChatCall): Promise<void> {
    const record: StreamRecord = { tokens: 0, outcome: 'open' };
    call.stream = record;
    const epoch = this.epoch;
    this.streams += 1;
    this.openStreams += 1;
    this.lastStream = record;
    const closed = new AbortController();
    res.once('close', () => {
      this.openStreams -= 1;
      if (record.outcome === 'open') record.outcome = this.lifetime.signal.aborted ? 'serverClosed' : 'abortedByClient';
      if (record.outcome === 'abortedByClient' && epoch === this.epoch) this.streamsAbortedByClient += 1;
      closed.abort();
      this.notifyWaiters();
    });
    const out = new EventStreamWriter(res, AbortSignal.any([closed.signal, this.lifetime.signal]), fault.keepAliveMs ?? 0);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-request-id': randomUUID() });
    res.flushHeaders();
    if (fault.kind === 'stallBeforeFirstToken') return void (await out.idle(Infinity));

    const chunk = chunkMaker(modelOf(request));
    const answer = fault.answer ?? defaultAnswer(request);
    const tokens = tokenize(answer);
    const interval = fault.tokenIntervalMs ?? (fault.kind === 'slowTokens' ? SLOW_TOKEN_INTERVAL_MS : 0);
    const breaking = fault.kind === 'ok' || fault.kind === 'slowTokens' ? undefined : fault;
    const strikeAt = Math.min(breaking?.afterTokens ?? DEFAULT_AFTER_TOKENS, tokens.length);
    if (!(await out.event(chunk([textChoice('')])))) return;
    for (let i = 0; i <= tokens.length; i += 1) {
      if (breaking && i === strikeAt && !(await this.strike(breaking, out, record))) return;
      const token = tokens[i];
      if (token === undefined) break;
      if (!(await out.idle(interval)) || !(await out.event(chunk([textChoice(token)])))) return;
      record.tokens += 1;
      if (epoch === this.epoch) this.tokensWritten += 1;
      this.notifyWaiters();
    }
    if (!(await out.event(chunk([textChoice('', 'stop')])))) return;
    if (includeUsage(request) && !(await out.event(chunk([], usageOf(request, answer))))) return;
    await out.done(record);
  }

  /** Breaks the stream; true when it goes on afterwards. */
  private async strike(fault: MidStreamFault, out: EventStreamWriter, record: StreamRecord): Promise<boolean> {
    switch (fault.kind) {
      case 'stallMidStream':
        return out.idle(Infinity); // false once the client or close() ends it
      case 'cutMidStream':
        record.outcome = 'cut';
        await out.cut();
        return false;
      case 'errorMidStream':
        if (await out.event(JSON.stringify(streamError(fault)))) await out.done(record);
        return false;
      case 'malformedChunk':
        return out.event(MALFORMED_CHUNK);
    }
  }

  /** False when the server closed during the wait, so the caller must not touch the response. */
  private async delay({ latencyMs = 0, jitterMs = 0 }: Timing): Promise<boolean> {
    const ms = latencyMs + Math.random() * jitterMs;
    if (ms <= 0) return true;
    return sleep(ms, true, { signal: this.lifetime.signal }).catch(() => false);
  }
}

/**
 * Writes one SSE event at a time and respects backpressure: a write the socket cannot take yet waits for 'drain', so
 * a slow reader slows the fake down instead of piling tokens up in memory. Every method answers false once the
 * client or close() has ended the stream, so the caller stops.
 */
class EventStreamWriter {
  /** Settles once the last write reached the socket (or failed). */
  private flushed: Promise<void> = Promise.resolve();

  constructor(
    private readonly res: ServerResponse,
    private readonly gone: AbortSignal,
    private readonly keepAliveMs: number,
  ) {}

  /** Writes `data: <data>` as one event. */
  event(data: string): Promise<boolean> {
    return this.write(`data: ${data}\n\n`);
  }

  /** Waits `ms` (Infinity: until the stream is gone), writing keep-alive comments meanwhile if asked to. */
  async idle(ms: number): Promise<boolean> {
    const every = this.keepAliveMs > 0 ? this.keepAliveMs : Infinity;
    for (let left = ms; left > 0; left -= every) {
      if (!(await pause(Math.min(left, every), this.gone))) return false;
      if (left > every && !(await this.write(':\n\n'))) return false;
    }
    return !this.gone.aborted;
  }

  /** `data: [DONE]` and the end of the response: the stream's regular end. */
  async done(record: StreamRecord): Promise<void> {
    if (!(await this.event('[DONE]'))) return;
    record.outcome = 'done';
    this.res.end();
  }

  /** Destroys the socket once everything written so far has reached it, so the client gets those tokens first. */
  async cut(): Promise<void> {
    await this.flushed;
    this.res.socket?.destroy();
  }

  private async write(text: string): Promise<boolean> {
    if (this.gone.aborted) return false;
    let accepted = true;
    this.flushed = new Promise((resolve) => {
      accepted = this.res.write(text, () => resolve());
    });
    if (accepted) return true;
    return once(this.res, 'drain', { signal: this.gone }).then(
      () => true,
      () => false,
    );
  }
}

/** Resolves true after `ms`, or false as soon as `signal` aborts; `ms` may be Infinity. */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  if (ms === Infinity) return new Promise((resolve) => signal.addEventListener('abort', () => resolve(false), { once: true }));
  return sleep(ms, true, { signal }).catch(() => false);
}

function isStreamRequest(request: unknown): boolean {
  return isRecord(request) && request['stream'] === true;
}

function isStreamingFault(fault: LeafFault): fault is StreamingFault {
  return fault.kind === 'ok' || (STREAM_FAULT_KINDS as readonly string[]).includes(fault.kind);
}

/** `stream_options: {include_usage: true}` asks for a last chunk with empty choices and the usage, before [DONE]. */
function includeUsage(request: unknown): boolean {
  const options = isRecord(request) ? request['stream_options'] : undefined;
  return isRecord(options) && options['include_usage'] === true;
}

/** Words with the whitespace after them, so the tokens join back into exactly the answer. */
function tokenize(answer: string): string[] {
  const tokens = answer.match(/\s*\S+\s*/g) ?? [];
  return tokens.length === 0 && answer !== '' ? [answer] : tokens;
}

/** ChatCompletionChunk JSON as TGI streams it: every chunk of one stream shares id and created; usage is null but on the usage chunk. */
function chunkMaker(model: string): (choices: object[], usage?: object) => string {
  const id = `chatcmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  return (choices, usage) =>
    JSON.stringify({ id, object: 'chat.completion.chunk', created, model, system_fingerprint: FINGERPRINT, choices, usage: usage ?? null });
}

/** TGI's delta is a TextMessage: role and content on every chunk, '' for the role and finish chunks. */
function textChoice(content: string, finishReason: string | null = null): object {
  return { index: 0, delta: { role: 'assistant', content }, logprobs: null, finish_reason: finishReason };
}

function streamError(fault: Extract<StreamFault, { kind: 'errorMidStream' }>): object {
  const error = fault.error ?? STREAM_ERROR;
  if (fault.errorShape === 'errorResponse') return { error, error_type: fault.errorType ?? 'generation' };
  return { error: { message: error, http_status_code: CHAT_STREAM_ERROR_STATUS } };
}

/** Resolves composite faults to the leaf that call number `n` (1-based since setFault) gets. */
function pickFault(fault: Fault, n: number): LeafFault {
  if (fault.kind === 'flapping') return n % fault.every === 0 ? pickFault(fault.failWith ?? { kind: 'error500' }, n) : { kind: 'ok' };
  if (fault.kind === 'sequence') return pickFault(fault.faults[Math.min(n, fault.faults.length) - 1] ?? OK, n);
  return fault;
}

function respond(fault: LeafFault, res: ServerResponse, request: unknown): void {
  const model = modelOf(request);
  switch (fault.kind) {
    case 'ok':
    case 'slowTokens':
      return sendJson(res, 200, chatCompletion(model, fault.answer ?? defaultAnswer(request), request));
    case 'loading503':
      return sendJson(res, 503, {
        error: `Model ${model} is currently loading`,
        error_type: 'loading',
        estimated_time: fault.estimatedTimeSeconds ?? 20.0,
      });
    case 'rateLimited429':
      return sendJson(res, 429, { error: 'Model is overloaded', error_type: 'overloaded' }, rateLimitHeaders(fault));
    case 'raw':
      if (typeof fault.body === 'string') return send(res, fault.status, fault.body, { ...TEXT_TYPE, ...fault.headers });
      return sendJson(res, fault.status, fault.body, fault.headers);
    case 'hang':
    case 'stallBeforeFirstToken':
    case 'stallMidStream':
      return; // never answer: the socket stays open until the client gives up or close() runs
    case 'reset':
    case 'cutMidStream':
      return void res.socket?.resetAndDestroy();
    case 'malformed':
    case 'malformedChunk':
      return send(res, 200, '{"id": "x", "choices": [', JSON_TYPE);
    case 'errorMidStream':
      return sendJson(res, 500, { error: fault.error ?? STREAM_ERROR, error_type: fault.errorType ?? 'generation' });
    case 'truncated':
      return sendTruncated(res, JSON.stringify(chatCompletion(model, defaultAnswer(request), request)));
    case 'missingFields': {
      const { choices: _dropped, ...rest } = chatCompletion(model, defaultAnswer(request), request);
      return sendJson(res, 200, rest);
    }
    default:
      return sendError(fault.kind, res, model);
  }
}

function sendError(kind: TgiErrorKind | RouterErrorKind, res: ServerResponse, model: string): void {
  if (kind in TGI_ERRORS) {
    const [status, error, errorType] = TGI_ERRORS[kind as TgiErrorKind];
    return sendJson(res, status, { error, error_type: errorType });
  }
  const [status, body] = ROUTER_ERRORS[kind as RouterErrorKind];
  sendJson(res, status, body(model));
}

function rateLimitHeaders(fault: { retryAfterSeconds?: number; ratelimitSeconds?: number }): Record<string, string> {
  const headers: Record<string, string> = {};
  if (fault.retryAfterSeconds !== undefined) headers['retry-after'] = String(fault.retryAfterSeconds);
  if (fault.ratelimitSeconds !== undefined) {
    headers['ratelimit'] = `"api";r=0;t=${fault.ratelimitSeconds}`;
    headers['ratelimit-policy'] = '"fixed window";"api";q=1000;w=300';
  }
  return headers;
}

function chatCompletion(model: string, content: string, request: unknown) {
  return {
    id: `chatcmpl-${randomUUID()}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    system_fingerprint: FINGERPRINT,
    choices: [{ index: 0, message: { role: 'assistant', content }, logprobs: null, finish_reason: 'stop' }],
    usage: usageOf(request, content),
  };
}

function usageOf(request: unknown, content: string) {
  const promptTokens = countTokens(JSON.stringify(messagesOf(request)));
  const completionTokens = countTokens(content);
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

const INFO = {
  model_id: 'tgi',
  model_sha: null,
  model_pipeline_tag: 'text-generation',
  max_concurrent_requests: 128,
  max_best_of: 2,
  max_stop_sequences: 4,
  max_input_tokens: 4095,
  max_total_tokens: 4096,
  validation_workers: 2,
  max_client_batch_size: 4,
  router: 'text-generation-router',
  version: '3.3.6',
  sha: null,
  docker_label: null,
};

/** Deterministic so tests can assert on it: derived from the last user message. */
function defaultAnswer(request: unknown): string {
  const lastUser = messagesOf(request)
    .filter((m) => m.role === 'user')
    .at(-1);
  return `Answer: ${textOf(lastUser?.content).slice(0, 80)}`;
}

function messagesOf(request: unknown): Array<{ role?: unknown; content?: unknown }> {
  const messages = isRecord(request) ? request['messages'] : undefined;
  return Array.isArray(messages) ? messages.filter(isRecord) : [];
}

/** Message content is a string or TGI MessageChunk[]; only the text chunks matter here. */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((chunk) => (isRecord(chunk) && typeof chunk['text'] === 'string' ? chunk['text'] : '')).join(' ');
}

function modelOf(request: unknown): string {
  const model = isRecord(request) ? request['model'] : undefined;
  return typeof model === 'string' && model !== '' ? model : 'tgi';
}

/** Rough whitespace count: usage only needs to be plausible and deterministic. */
function countTokens(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

const JSON_TYPE = { 'content-type': 'application/json' };
const TEXT_TYPE = { 'content-type': 'text/plain; charset=utf-8' };

function sendJson(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  if (body === undefined) return send(res, status, '', headers);
  send(res, status, JSON.stringify(body), { ...JSON_TYPE, ...headers });
}

/** x-request-id ends up in the client's error.httpResponse.requestId, so tests can correlate. */
function send(res: ServerResponse, status: number, payload: string, headers: Record<string, string>): void {
  const length = String(Buffer.byteLength(payload));
  res.writeHead(status, { 'content-length': length, 'x-request-id': randomUUID(), ...headers }).end(payload);
}

/** Promises the full length, sends half, then drops the connection mid-body. */
function sendTruncated(res: ServerResponse, payload: string): void {
  res.writeHead(200, { ...JSON_TYPE, 'content-length': String(Buffer.byteLength(payload)), 'x-request-id': randomUUID() });
  res.write(payload.slice(0, Math.floor(payload.length / 2)), () => res.socket?.destroy());
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve('')); // an aborted upload still counts as a (broken) request
  });
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const DURATION_OPTIONS = ['latencyMs', 'jitterMs', 'tokenIntervalMs', 'keepAliveMs'] as const;

/**
 * Checks what pickFault and the stream rely on, so a bad admin PUT is a 400 rather than a crash (or a stream that
 * never breaks) on the next call.
 */
function isFault(value: unknown): value is Fault {
  if (!isRecord(value) || typeof value['kind'] !== 'string' || !FAULT_KINDS.has(value['kind'])) return false;
  const { kind, every, failWith, faults, afterTokens, errorShape } = value;
  if (kind === 'flapping') return typeof every === 'number' && every >= 1 && (failWith === undefined || isFault(failWith));
  if (kind === 'sequence') return Array.isArray(faults) && faults.every(isFault);
  if (kind === 'raw' && !isRawAnswer(value)) return false;
  const durationsOk = DURATION_OPTIONS.every((key) => value[key] === undefined || isNonNegative(value[key]));
  const afterTokensOk = afterTokens === undefined || (isNonNegative(afterTokens) && Number.isInteger(afterTokens));
  const shapeOk = errorShape === undefined || errorShape === 'chat' || errorShape === 'errorResponse';
  return durationsOk && afterTokensOk && shapeOk;
}

/** A status writeHead takes, and header values that are strings. */
function isRawAnswer({ status, headers }: Record<string, unknown>): boolean {
  const statusOk = typeof status === 'number' && Number.isInteger(status) && status >= 200 && status <= 599;
  return statusOk && (headers === undefined || (isRecord(headers) && Object.values(headers).every((value) => typeof value === 'string')));
}

function isNonNegative(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

/** CLI: `FAKE_HF_PORT=8089 node <loader> test/support/fake-hf-upstream.ts` for the chaos suite and demos. */
export async function main(): Promise<FakeHfUpstream> {
  const upstream = await FakeHfUpstream.start({ port: Number(process.env['FAKE_HF_PORT'] ?? 0) });
  process.stdout.write(`fake-hf-upstream listening on ${upstream.url}\n`);
  return upstream;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) void main();
