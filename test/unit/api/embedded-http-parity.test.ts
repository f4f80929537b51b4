/**
 * The embedded API (`createFlotilla()` methods) and the HTTP API refuse the same bad input
 * the same way: one list of inputs, driven through both, compared by status, code, message
 * and every detail (path and message). The HTTP layer only maps HTTP to calls; a rule that
 * lived in it alone (the endpoint-name check, once) would show up here as a difference.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type InMemoryApi,
  START_TIMEOUT_MS,
  seedFixtures,
  startInMemoryApi,
} from './in-memory-api.ts';
import { parityCases as cases, embeddedError, httpError } from './parity-cases.ts';

let api: InMemoryApi;
beforeAll(async () => {
  api = await startInMemoryApi();
  await seedFixtures(api.flotilla);
}, START_TIMEOUT_MS);
afterAll(async () => {
  await api?.close();
});

describe('embedded API and HTTP API refuse alike', () => {
  it('the list holds at least 30 inputs', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });

  it.each(cases)('$name -> $status $code at "$path" through both', async (c) => {
    const viaHttp = await httpError(api.app, c);
    const embedded = await embeddedError(api.flotilla, c);
    expect(embedded).toEqual(viaHttp);
    expect(viaHttp.status).toBe(c.status);
    expect(viaHttp.code).toBe(c.code);
    expect(viaHttp.details.map((d) => d.path)).toContain(c.path);
  });

  it('writes nothing for any of them', async () => {
    const names = (await api.flotilla.store.listDeployments({ includeDeleted: true }))
      .map((d) => d.name)
      .sort();
    expect(names).toEqual(['gone', 'taken']);
    expect((await api.flotilla.listEndpoints()).map((e) => e.name)).toEqual(['ep']);
  });
});
