import { describe, expect, it } from 'vitest';
import { column as c, rowMapper } from '../../../src/store/row-mapper.ts';

describe('rowMapper', () => {
  const toRecord = rowMapper<{
    id: string;
    count: number;
    note: string | null;
    at: string;
    gone_at: string | null;
    body: unknown;
    extra: unknown;
  }>({
    id: c.text,
    count: c.number,
    note: c.textOrNull,
    at: c.iso,
    gone_at: c.isoOrNull,
    body: c.json,
    extra: c.jsonOrNull,
  });

  it('reads each field from its column, whichever form the driver returns', () => {
    // pg: Date and int8 as string; PGlite: ISO string and number.
    const fromPg = toRecord({
      id: 'a',
      count: '3',
      note: null,
      at: new Date('2026-01-02T03:04:05Z'),
      gone_at: null,
      body: { k: 1 },
      unknown_column: 'ignored',
    });
    const fromPglite = toRecord({
      id: 'a',
      count: 3,
      at: '2026-01-02 03:04:05+00',
      body: { k: 1 },
    });
    const expected = {
      id: 'a',
      count: 3,
      note: null,
      at: '2026-01-02T03:04:05.000Z',
      gone_at: null,
      body: { k: 1 },
      extra: null,
    };
    expect(fromPg).toEqual(expected);
    expect(fromPglite).toEqual(expected);
    expect(Object.keys(fromPg)).toEqual(Object.keys(expected));
  });

  it('a timestamp that is present is normalised to ISO', () => {
    expect(toRecord({ at: '2026-01-02T03:04:05Z', gone_at: '2026-01-03T00:00:00Z' }).gone_at).toBe(
      '2026-01-03T00:00:00.000Z',
    );
  });
});
