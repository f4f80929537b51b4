/**
 * Every /v1 route is behind the token: the test walks the operations of /v1/openapi.json and
 * the inspector's hidden /v1 routes, and sends each one without a token (401 `unauthorized`),
 * with a wrong one and with malformed Authorization headers (401 or 403 — the project's
 * contract answers a wrong token 403 `forbidden`), checking that no refused request reaches
 * its handler. Spellings of a /v1 path that the router might still match (percent-encoded
 * letters, doubled slashes) are refused too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  auth,
  type InMemoryApi,
  START_TIMEOUT_MS,
  seedFixtures,
  startInMemoryApi,
  TOKEN,
} from './in-memory-api.ts';

let api: InMemoryApi;
let takenRevision: string | null | undefined;
const routes: Array<{ method: string; url: string }> = [];

beforeAll(async () => {
  api = await startInMemoryApi();
  await seedFixtures(api.flotilla);
  takenRevision = (await api.flotilla.get('taken')).revision_id;
  const doc = (
    await api.app.inject({ method: 'GET', url: '/v1/openapi.json', headers: auth })
  ).json() as { paths: Record<string, Record<string, unknown>> };
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const method of Object.keys(ops)) {
      // Path parameters name fixtures that exist, so a handler that ran would answer 2xx.
      const url = path
        .replace('{id}', 'taken')
        .replace('{name}', path.includes('endpoints') ? 'ep' : 'taken');
      routes.push({ method: method.toUpperCase(), url });
    }
  }
  routes.push(
    { method: 'GET', url: '/v1/openapi.json' },
    { method: 'GET', url: '/v1/events/stream' },
    { method: 'GET', url: '/v1/deployments/taken/state' },
    { method: 'GET', url: '/v1/inspector/fleet' },
  );
}, START_TIMEOUT_MS);

afterAll(async () => {
  await api?.close();
});

const bodies: Record<string, unknown> = {
  'POST /v1/deployments': { name: 'sneaky', command: 'sleep 1', replicas: 0 },
  'POST /v1/deployments/taken/scale': { replicas: 3 },
  'PATCH /v1/deployments/taken': { command: 'sleep 2' },
  'POST /v1/revisions/preview': { name: 'sneaky', command: 'sleep 1' },
  'PUT /v1/scaling-groups/taken': { settings: { x: 1 } },
  'POST /v1/endpoints': { name: 'sneaky', backends: [] },
  'PUT /v1/endpoints/ep': { backends: [] },
};

async function call(method: string, url: string, authorization?: string) {
  const body = bodies[`${method} ${url}`];
  return api.app.inject({
    method: method as 'GET',
    url,
    headers: {
      ...(authorization !== undefined ? { authorization } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
}

function expectRefused(
  res: { statusCode: number; json(): unknown },
  status: number,
  code: string,
  what: string,
) {
  expect(res.statusCode, what).toBe(status);
  const e = (res.json() as { error: { code: string; details: Array<{ path: string }> } }).error;
  expect(e.code, what).toBe(code);
  expect(
    e.details.map((d) => d.path),
    what,
  ).toEqual(['authorization']);
}

describe('every route under the token', () => {
  it('the walk covers every documented operation and the inspector routes', () => {
    expect(routes.length).toBeGreaterThanOrEqual(22);
    for (const u of ['/v1/events/stream', '/v1/deployments/taken/state', '/v1/inspector/fleet']) {
      expect(routes.some((r) => r.url === u)).toBe(true);
    }
  });

  it('every /v1 route answers 401 unauthorized without a token', async () => {
    for (const { method, url } of routes.filter((r) => r.url.startsWith('/v1'))) {
      expectRefused(await call(method, url), 401, 'unauthorized', `${method} ${url}`);
    }
  });

  it('every /v1 route refuses a wrong token (403 forbidden) and malformed headers (401)', async () => {
    const wrong = [
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN.slice(0, -1)}`,
      'Bearer x',
      `Bearer ${TOKEN.toUpperCase()}`,
    ];
    const malformed = [
      TOKEN,
      `Basic ${TOKEN}`,
      'Bearer',
      'Bearer ',
      `Bearer ${TOKEN} extra`,
      `Token ${TOKEN}`,
    ];
    for (const { method, url } of routes.filter((r) => r.url.startsWith('/v1'))) {
      for (const a of wrong)
        expectRefused(await call(method, url, a), 403, 'forbidden', `${method} ${url} ${a}`);
      for (const a of malformed)
        expectRefused(await call(method, url, a), 401, 'unauthorized', `${method} ${url} ${a}`);
    }
  });

  it('refused requests reach no handler: nothing was created, scaled, changed or deleted', async () => {
    const list = await api.flotilla.list();
    expect(list.map((d) => d.name).sort()).toEqual(['taken']);
    const taken = await api.flotilla.get('taken');
    expect(taken.state).not.toMatch(/TERMINAT/);
    expect(taken.target_replicas).toBe(0);
    expect(taken.revision_id).toBe(takenRevision);
    expect((await api.flotilla.listEndpoints()).map((e) => e.name)).toEqual(['ep']);
    const ok = await call('GET', '/v1/deployments/taken', auth.authorization);
    expect(ok.statusCode).toBe(200);
  });

  it('other spellings of a /v1 path do not slip past the token', async () => {
    const spellings = [
      '/%761/deployments',
      '/v%31/deployments',
      '//v1/deployments',
      '/v1//deployments',
      '/./v1/deployments',
      '/v1/./deployments',
      '/x/../v1/deployments',
      '/V1/deployments',
      '/v1/deployments/',
      '/v1/deployments?x=/health',
      '/v1/deployments#x',
      '/v1/%64eployments/taken',
      '/v1/deployments/%74aken',
    ];
    for (const url of spellings) {
      const res = await api.app.inject({ method: 'GET', url });
      // Either refused for the token or not a route at all; never the data.
      expect([401, 404], `${url} -> ${res.statusCode} ${res.body.slice(0, 200)}`).toContain(
        res.statusCode,
      );
      expect(res.body, url).not.toContain('"taken"');
    }
  });

  it('the inspector page is served without the token but carries no fleet data', async () => {
    for (const url of ['/inspector', '/inspector/', '/inspector/deployments/taken']) {
      const res = await api.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(200);
      expect(res.headers['content-type']).toMatch(/text\/html/);
      expect(res.body, url).not.toContain('sleep 1000');
    }
  });
});
