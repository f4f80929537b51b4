/**
 * The HTTP API's bad-request matrix (shared with test/integration/api/bad-requests.test.ts)
 * against an in-memory Flotilla: every case answers its status, code and field path in the
 * error shape, and writes nothing. No PostgreSQL, no processes: it runs in seconds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { badRequestCases } from './bad-request-cases.ts';
import {
  type ErrorBodyJson,
  type InMemoryApi,
  START_TIMEOUT_MS,
  seedFixtures,
  send,
  startInMemoryApi,
} from './in-memory-api.ts';

let api: InMemoryApi;
beforeAll(async () => {
  api = await startInMemoryApi();
  await seedFixtures(api.flotilla);
}, START_TIMEOUT_MS);
afterAll(async () => {
  await api?.close();
});

async function counts() {
  const store = api.flotilla.store;
  const deployments = await store.listDeployments({ includeDeleted: true });
  const revisions = await Promise.all(deployments.map((d) => store.listRevisions(d.id)));
  return {
    deployments: deployments.map((d) => `${d.name}:${d.target_replicas}:${d.state}`).sort(),
    revisions: revisions.flat().length,
    endpoints: (await store.listEndpoints()).map((e) => JSON.stringify([e.name, e.backends])),
    group: JSON.stringify(await store.getScalingGroup('default')),
  };
}

describe('bad requests (in memory)', () => {
  it.each(badRequestCases)('$name: $method $url -> $status $code at "$path"', async (c) => {
    const before = await counts();
    const res = await send(api.app, c);
    expect(res.statusCode, res.body).toBe(c.status);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = res.json() as ErrorBodyJson;
    expect(Object.keys(body)).toEqual(['error']);
    expect(body.error.code).toBe(c.code);
    expect(body.error.message.length).toBeGreaterThan(0);
    expect(body.error.details.map((d) => d.path)).toContain(c.path);
    for (const d of body.error.details) expect(d.message.length).toBeGreaterThan(0);
    expect(await counts()).toEqual(before);
  });
});
