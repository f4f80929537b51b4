/**
 * Every error the API answers, Fastify's own included (router, body parser, closing), is
 * `{"error": {"code", "message", "details": [{"path", "message"}, ...]}}` with a JSON
 * content type; and the small input holes found by the black-box probe (issue 15) are
 * refused by validation, naming the field.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, MAX_PARAM_LENGTH } from '../../../src/api/build-app.ts';
import { createMetrics } from '../../../src/api/metrics.ts';
import {
  auth,
  type ErrorBodyJson,
  type InMemoryApi,
  START_TIMEOUT_MS,
  send,
  startInMemoryApi,
  TOKEN,
} from './in-memory-api.ts';

let api: InMemoryApi;
beforeAll(async () => {
  api = await startInMemoryApi();
}, START_TIMEOUT_MS);
afterAll(async () => {
  await api?.close();
});

function expectErrorShape(
  res: { statusCode: number; headers: Record<string, unknown>; body: string },
  want: { status: number; code: string; path: string },
): ErrorBodyJson {
  expect(res.statusCode, res.body).toBe(want.status);
  expect(String(res.headers['content-type'])).toMatch(/^application\/json/);
  const body = JSON.parse(res.body) as ErrorBodyJson;
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'details', 'message']);
  expect(body.error.code).toBe(want.code);
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(body.error.details.length).toBeGreaterThan(0);
  for (const d of body.error.details) {
    expect(Object.keys(d).sort()).toEqual(['message', 'path']);
    expect(d.message.length).toBeGreaterThan(0);
  }
  expect(body.error.details.map((d) => d.path)).toContain(want.path);
  return body;
}

describe("framework errors in the API's error shape", () => {
  it('a 300-character id is a 400 validation error at id, not the router 414', async () => {
    const res = await send(api.app, { method: 'GET', url: `/v1/deployments/${'a'.repeat(300)}` });
    expectErrorShape(res, { status: 400, code: 'validation', path: 'id' });
  });

  it('a path parameter past the router limit is 414 uri_too_long in the error shape', async () => {
    const long = 'a'.repeat(MAX_PARAM_LENGTH + 1);
    const res = await send(api.app, { method: 'GET', url: `/v1/deployments/${long}` });
    const body = expectErrorShape(res, { status: 414, code: 'uri_too_long', path: '(url)' });
    expect(body.error.message).not.toContain(long);
  });

  it('malformed percent-encoding (%FF%FE) is a 400 validation error at (url)', async () => {
    const res = await send(api.app, { method: 'GET', url: '/v1/deployments/%FF%FE' });
    expectErrorShape(res, { status: 400, code: 'validation', path: '(url)' });
  });

  it('an unknown route is 404 not_found at (url)', async () => {
    const res = await send(api.app, { method: 'GET', url: '/v2/nothing' });
    expectErrorShape(res, { status: 404, code: 'not_found', path: '(url)' });
  });

  it('invalid JSON is 400 validation at (body)', async () => {
    const res = await send(api.app, {
      method: 'POST',
      url: '/v1/deployments',
      payload: '{"name":',
      headers: { 'content-type': 'application/json' },
    });
    expectErrorShape(res, { status: 400, code: 'validation', path: '(body)' });
  });

  it('a body over the limit is 413 payload_too_large at (body)', async () => {
    const res = await send(api.app, {
      method: 'POST',
      url: '/v1/deployments',
      payload: { name: 'big', environ: { X: 'x'.repeat(1024 * 1024 + 1) } },
    });
    expectErrorShape(res, { status: 413, code: 'payload_too_large', path: '(body)' });
  });

  it('a content type other than JSON is 415 unsupported_media_type at content-type', async () => {
    for (const type of ['text/plain', 'application/xml', 'multipart/form-data; boundary=x']) {
      const res = await send(api.app, {
        method: 'POST',
        url: '/v1/deployments',
        payload: 'name=x',
        headers: { 'content-type': type },
      });
      expectErrorShape(res, { status: 415, code: 'unsupported_media_type', path: 'content-type' });
    }
  });

  it('a missing token is 401 and a wrong one 403, both at authorization', async () => {
    const none = await api.app.inject({ method: 'GET', url: '/v1/deployments' });
    expectErrorShape(none, { status: 401, code: 'unauthorized', path: 'authorization' });
    const wrong = await api.app.inject({
      method: 'GET',
      url: '/v1/deployments',
      headers: { authorization: 'Bearer nope' },
    });
    expectErrorShape(wrong, { status: 403, code: 'forbidden', path: 'authorization' });
  });
});

describe('input the API refuses by validation', () => {
  it('a NUL byte in an id is 400 at id and never reaches the store', async () => {
    for (const url of ['/v1/deployments/a%00b', '/v1/deployments/%00/events']) {
      const res = await send(api.app, { method: 'GET', url });
      expectErrorShape(res, { status: 400, code: 'validation', path: 'id' });
    }
  });

  it('a NUL byte in any string of a body is 400 at its field, before the store sees it', async () => {
    const base = { name: 'nul', command: 'sleep 1000', replicas: 0 };
    const bad: Array<[string, string, unknown, string]> = [
      ['POST', '/v1/deployments', { ...base, environ: { A: 'a\u0000b' } }, 'environ.A'],
      ['POST', '/v1/deployments', { ...base, command: ['sleep', '1\u0000'] }, 'command[1]'],
      ['POST', '/v1/revisions/preview', { ...base, model_name: 'm\u0000' }, 'model_name'],
      ['PUT', '/v1/scaling-groups/default', { settings: { note: 'x\u0000' } }, 'settings.note'],
    ];
    for (const [method, url, payload, path] of bad) {
      const res = await send(api.app, { method: method as 'POST' | 'PUT', url, payload });
      const body = expectErrorShape(res, { status: 400, code: 'validation', path });
      expect(body.error.message).toContain('NUL byte');
    }
    expect(await api.flotilla.list()).toEqual([]);
  });

  it.each(['health', 'ready', 'metrics', 'inspector'])(
    'the name %s is reserved for deployments and endpoints (400 at name)',
    async (name) => {
      const d = await send(api.app, {
        method: 'POST',
        url: '/v1/deployments',
        payload: { name, command: 'sleep 1000', replicas: 0 },
      });
      const body = expectErrorShape(d, { status: 400, code: 'validation', path: 'name' });
      expect(body.error.message).toContain('reserved');
      const e = await send(api.app, {
        method: 'POST',
        url: '/v1/endpoints',
        payload: { name, backends: [] },
      });
      expectErrorShape(e, { status: 400, code: 'validation', path: 'name' });
      const put = await send(api.app, {
        method: 'PUT',
        url: `/v1/endpoints/${name}`,
        payload: { backends: [] },
      });
      expectErrorShape(put, { status: 400, code: 'validation', path: 'name' });
    },
  );

  it('scaling_policy.max_replicas of 2^53-1 is refused: the limit of 1000 holds there too', async () => {
    for (const field of ['max_replicas', 'min_replicas']) {
      const res = await send(api.app, {
        method: 'POST',
        url: '/v1/deployments',
        payload: {
          name: 'huge',
          command: 'sleep 1000',
          replicas: 0,
          scaling_policy: { [field]: Number.MAX_SAFE_INTEGER },
        },
      });
      expectErrorShape(res, { status: 400, code: 'validation', path: `scaling_policy.${field}` });
    }
    expect(await api.flotilla.list()).toEqual([]);
  });
});

describe('while closing', () => {
  it("requests that arrive during close get 503 in the error shape, not Fastify's body", async () => {
    // A second app over the same Flotilla: closing it leaves the shared one alone.
    const app = buildApp({
      flotilla: api.flotilla,
      metrics: createMetrics({ defaultMetrics: false }),
      token: TOKEN,
    });
    let release = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let entered = () => {};
    const closingStarted = new Promise<void>((r) => {
      entered = r;
    });
    // Holds close() in its preClose phase, after the API's own preClose hook has run.
    app.addHook('preClose', async () => {
      entered();
      await gate;
    });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    const closed = app.close();
    await closingStarted;
    const res = await fetch(`${url}/v1/deployments`, { headers: auth });
    const text = await res.text();
    release();
    await closed;
    expectErrorShape(
      {
        statusCode: res.status,
        headers: { 'content-type': res.headers.get('content-type') },
        body: text,
      },
      { status: 503, code: 'dependency_unavailable', path: '(request)' },
    );
    expect(res.headers.get('retry-after')).toBe('1');
  });
});
