/**
 * Query parameters that carry a credential when a caller puts one in a URL (`?api_key=…`). The app reads keys from
 * headers only, but a caller's mistake must not put a key in the log.
 */
const CREDENTIAL_PARAMETERS = new Set(['api_key', 'apikey', 'api-key', 'x-api-key', 'key', 'token', 'access_token']);

/**
 * `url` with the value of each credential parameter of its query replaced by `censor`, everything else as it came.
 * Names are compared decoded and in lower case (`%4Bey`, `KEY`, `key[]` are `key`); the whole rest of the URL after
 * the `?` is the query, a `#` included, as Fastify's query parser reads it.
 */
export function redactCredentialsInQuery(url: string, censor: string): string {
  const start = url.indexOf('?');
  if (start < 0) return url;
  const pairs = url
    .slice(start + 1)
    .split('&')
    .map((pair) => {
      const equals = pair.indexOf('=');
      if (equals < 0) return pair;
      const name = pair.slice(0, equals);
      return CREDENTIAL_PARAMETERS.has(normalisedName(name)) ? `${name}=${censor}` : pair;
    });
  return `${url.slice(0, start + 1)}${pairs.join('&')}`;
}

function normalisedName(raw: string): string {
  let name = raw.replace(/\+/g, ' ');
  try {
    name = decodeURIComponent(name);
  } catch {
    // A malformed escape: compared as it came.
  }
  return name
    .trim()
    .toLowerCase()
    .replace(/\[[^\]]*\]$/, '');
}
