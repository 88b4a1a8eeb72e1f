import { describe, expect, it } from '@jest/globals';
import { requestIdFrom } from './request-id.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('requestIdFrom', () => {
  it("keeps the caller's id when it is printable and at most 128 characters", () => {
    expect(requestIdFrom('abc-123')).toBe('abc-123');
    expect(requestIdFrom('x'.repeat(128))).toBe('x'.repeat(128));
    expect(requestIdFrom('trace:0af7651916cd43dd8448eb211c80319c/b7ad6b7169203331')).toBe(
      'trace:0af7651916cd43dd8448eb211c80319c/b7ad6b7169203331',
    );
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['longer than 128 characters', 'x'.repeat(129)],
    ['holding a space', 'two words'],
    ['holding a line break', 'id\n{"level":60}'],
    ['holding a control character', 'id\u0007'],
    ['not ASCII', 'idé'],
    ['repeated (a list)', ['a', 'b']],
  ])('generates a UUID when the header is %s', (_case, header) => {
    expect(requestIdFrom(header)).toMatch(UUID);
  });

  it('generates a different id for each request', () => {
    expect(requestIdFrom(undefined)).not.toBe(requestIdFrom(undefined));
  });
});
