import { describe, expect, it } from '@jest/globals';
import { redactCredentialsInQuery } from './url-redaction.js';

const redact = (url: string) => redactCredentialsInQuery(url, '[redacted]');

describe('redactCredentialsInQuery', () => {
  it('censors the values of api_key, key, token and access_token and keeps every other parameter as it came', () => {
    expect(redact('/assistant/query?api_key=S1&topK=3&key=S2&token=S3&access_token=S4&q=a%20b')).toBe(
      '/assistant/query?api_key=[redacted]&topK=3&key=[redacted]&token=[redacted]&access_token=[redacted]&q=a%20b',
    );
  });

  it('knows a name however it is spelt: upper case, percent-encoded, with brackets or the header’s name', () => {
    expect(redact('/x?KEY=S1&%6Bey=S2&key[]=S3&Access_Token=S4&x-api-key=S5&apikey=S6&api%5Fkey=S7')).toBe(
      '/x?KEY=[redacted]&%6Bey=[redacted]&key[]=[redacted]&Access_Token=[redacted]&x-api-key=[redacted]&apikey=[redacted]&api%5Fkey=[redacted]',
    );
  });

  it('reads the whole rest of the URL as the query, as the parser does: a "#" does not hide a key', () => {
    expect(redact('/x?a=1#&token=S1')).toBe('/x?a=1#&token=[redacted]');
  });

  it('leaves a URL without a query, a name without a value and a malformed escape alone', () => {
    expect(redact('/assistant/query')).toBe('/assistant/query');
    expect(redact('/x?key&keyring=1&%zz=2')).toBe('/x?key&keyring=1&%zz=2');
    expect(redact('/x?token=')).toBe('/x?token=[redacted]');
  });
});
