/**
 * The HTTP face of a single-role process (proxy, prober, standby coordinator): a `/ready`
 * that is not ready answers 503 in the API's error shape, one detail per missing thing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildNodeApp } from '../../../src/roles/node-app.ts';

let app: ReturnType<typeof buildNodeApp> | null = null;
afterEach(async () => {
  await app?.close();
  app = null;
});

describe('single-role /ready', () => {
  it('answers 503 with {"error": {code, message, details}} naming each missing dependency', async () => {
    app = buildNodeApp({
      role: 'proxy',
      registries: [],
      ready: async () => ({ ready: false, missing: ['redis not answering', 'no routing table'] }),
    });
    const res = await app.inject({ method: 'GET', url: '/ready' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    const body = res.json() as {
      ready: boolean;
      role: string;
      error: { code: string; message: string; details: Array<{ path: string; message: string }> };
    };
    expect(body.ready).toBe(false);
    expect(body.role).toBe('proxy');
    expect(body.error.code).toBe('dependency_unavailable');
    expect(body.error.message).toBe('not ready: redis not answering; no routing table');
    expect(body.error.details).toEqual([
      { path: 'ready', message: 'redis not answering' },
      { path: 'ready', message: 'no routing table' },
    ]);
  });

  it('answers 200 without an error once ready', async () => {
    app = buildNodeApp({
      role: 'prober',
      registries: [],
      ready: async () => ({ ready: true, missing: [] }),
    });
    const res = await app.inject({ method: 'GET', url: '/ready' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ ready: true, missing: [], role: 'prober' });
  });

  it('an unknown path is 404 in the error shape', async () => {
    app = buildNodeApp({
      role: 'prober',
      registries: [],
      ready: async () => ({ ready: true, missing: [] }),
    });
    const res = await app.inject({ method: 'GET', url: '/nothing' });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({
      error: {
        code: 'not_found',
        message: 'no route GET /nothing',
        details: [{ path: '(url)', message: 'no route GET /nothing' }],
      },
    });
  });
});
