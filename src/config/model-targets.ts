/**
 * The model targets a request tries in order (the contract's Models section): `HF_MODEL` first, then each entry of
 * `HF_FALLBACK_MODELS`. An entry is a model id sent through the endpoint in force, optionally with the router's
 * provider suffix (`Qwen/Qwen2.5-7B-Instruct:novita`), or `<model>@<base URL>` for a dedicated endpoint of its own.
 */
export interface ModelTargetConfig {
  /** The model id as configured, without any `@<base URL>`: what bodies, metrics and `/v1/models` name. */
  model: string;
  /** The endpoint this target's calls go to; undefined = the HF Inference Providers router. */
  endpointUrl?: string;
  /** Its breaker: `CIRCUIT_BREAKER_NAME` for the first, `<CIRCUIT_BREAKER_NAME>:<model>` for the others. */
  breakerName: string;
}

/** A model id as the Hub and the router spell it: `org/name`, or a bare name, with an optional `:provider`. */
const MODEL_ID = /^[A-Za-z0-9][\w.-]*(?:\/[\w.-]+)?(?::[A-Za-z0-9][\w.-]*)?$/;

/** Why an `HF_FALLBACK_MODELS` value cannot be used, or undefined when it can. */
export function fallbackModelsProblem(raw: string): string | undefined {
  for (const entry of entriesOf(raw)) {
    const problem = entryProblem(entry);
    if (problem) return problem;
  }
  return undefined;
}

/** The targets in order; the value must have passed fallbackModelsProblem and the names duplicateBreakerName. */
export function modelTargets(
  primary: { model: string; endpointUrl?: string; breakerName: string },
  fallbacksRaw: string,
): ModelTargetConfig[] {
  const first: ModelTargetConfig = {
    model: primary.model,
    breakerName: primary.breakerName,
    ...(primary.endpointUrl ? { endpointUrl: primary.endpointUrl } : {}),
  };
  return [
    first,
    ...entriesOf(fallbacksRaw).map((entry): ModelTargetConfig => {
      const { model, url } = splitEntry(entry);
      const endpointUrl = url ?? primary.endpointUrl;
      return { model, breakerName: `${primary.breakerName}:${model}`, ...(endpointUrl ? { endpointUrl } : {}) };
    }),
  ];
}

/** The first breaker name two fallback entries would share, if any. */
export function duplicateBreakerName(targets: readonly ModelTargetConfig[]): string | undefined {
  const seen = new Set<string>();
  for (const { breakerName } of targets) {
    if (seen.has(breakerName)) return breakerName;
    seen.add(breakerName);
  }
  return undefined;
}

function entriesOf(raw: string): string[] {
  return raw
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
}

function splitEntry(entry: string): { model: string; url?: string } {
  const at = entry.indexOf('@');
  return at < 0 ? { model: entry } : { model: entry.slice(0, at), url: entry.slice(at + 1) };
}

function entryProblem(entry: string): string | undefined {
  const { model, url } = splitEntry(entry);
  if (!MODEL_ID.test(model)) return `"${model}" is not a model id (org/name, optionally :provider)`;
  if (url === undefined) return undefined;
  // As the HF client reads it: a literal lower-case scheme, nothing around it (else the call goes to the router).
  if (!/^https?:\/\/\S+$/.test(url)) return `the endpoint of "${model}" must be an http:// or https:// URL`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `the endpoint of "${model}" is not a URL`;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return `the endpoint of "${model}" must be http or https`;
  if (parsed.username || parsed.password) return `the endpoint of "${model}" must not hold credentials (HF_TOKEN is sent)`;
  return undefined;
}
