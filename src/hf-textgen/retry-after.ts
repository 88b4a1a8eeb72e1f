/**
 * The upstream's wait hint in whole seconds, from (in order) `Retry-After` (seconds or HTTP date),
 * the Hub's IETF-draft `ratelimit: "api";r=0;t=55` (only with no requests remaining), or HF's model-loading `estimated_time`.
 */
export function retryAfterFromUpstream(headers: Headers | undefined, body: unknown, now = Date.now()): number | undefined {
  return fromRetryAfter(headers?.get('retry-after'), now) ?? fromRateLimit(headers?.get('ratelimit')) ?? fromEstimatedTime(body);
}

function fromRetryAfter(value: string | null | undefined, now: number): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return wholeSeconds(Number(trimmed));
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : wholeSeconds((date - now) / 1000);
}

/**
 * The Hub sends `ratelimit: "api";r=489;t=189` on ordinary answers too: `t` is when its window resets, a wait only
 * once no requests remain (`r=0`). Of several limits (comma-separated), the longest exhausted one.
 */
function fromRateLimit(value: string | null | undefined): number | undefined {
  const waits = (value ?? '').split(',').flatMap((limit) => {
    const remaining = parameter(limit, 'r');
    const reset = parameter(limit, 't');
    return remaining === 0 && reset !== undefined ? [reset] : [];
  });
  return waits.length > 0 ? wholeSeconds(Math.max(...waits)) : undefined;
}

/** An integer parameter (`;key=123`) of one structured-field item. */
function parameter(item: string, key: 'r' | 't'): number | undefined {
  const match = new RegExp(`;\\s*${key}=(\\d+)`).exec(item);
  return match ? Number(match[1]) : undefined;
}

function fromEstimatedTime(body: unknown): number | undefined {
  const estimated = (body as { estimated_time?: unknown } | null)?.estimated_time;
  return typeof estimated === 'number' && Number.isFinite(estimated) ? wholeSeconds(estimated) : undefined;
}

function wholeSeconds(seconds: number): number {
  return Math.max(1, Math.ceil(seconds));
}
