/**
 * A matrix of bad requests against the HTTP API over a real Flotilla on PostgreSQL: each is
 * answered with the right status, an error code, a field path in the details, and nothing is
 * written (deployments, revisions and endpoints counted before and after).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../../src/api/build-app.ts';
import { createMetrics } from '../../../src/api/metrics.ts';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { services } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';

const repo = resolve(import.meta.dirname, '../../..');
const TOKEN = 'matrix-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };
const schema = `t_api_bad_requests_${randomBytes(3).toString('hex')}`;
let passed = true;
let flotilla: Flotilla;
let app: FastifyInstance;

beforeAll(async () => {
  const admin = new pg.Client({ connectionString: services().databaseUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA "${schema}"`);
  await admin.end();
  const url = new URL(services().databaseUrl);
  url.searchParams.set('options', `-c search_path=${schema}`);
  flotilla = await createFlotilla({
    databaseUrl: url.toString(),
    dataDir: mkdtempSync(join(tmpdir(), 'flotilla-api-')),
    modelRoots: [repo],
    proxy: false,
    prober: false,
    runtime: { shards: 2 },
  });
  app = buildApp({ flotilla, metrics: createMetrics({ defaultMetrics: false }), token: TOKEN });
  // Fixtures: a live deployment (no replicas, so no processes), a deleted one, an endpoint.
  const live = await app.inject({
    method: 'POST',
    url: '/v1/deployments',
    headers: auth,
    payload: { name: 'taken', command: 'sleep 1000', replicas: 0 },
  });
  expect(live.statusCode, live.body).toBe(201);
  const gone = await app.inject({
    method: 'POST',
    url: '/v1/deployments',
    headers: auth,
    payload: { name: 'gone', command: 'sleep 1000', replicas: 0 },
  });
  expect(gone.statusCode, gone.body).toBe(201);
  await app.inject({ method: 'DELETE', url: '/v1/deployments/gone', headers: auth });
  await waitFor(async () => (await flotilla.get('gone')).state === 'TERMINATED', {
    timeoutMs: 30_000,
    message: 'gone never TERMINATED',
  });
  const ep = await app.inject({
    method: 'POST',
    url: '/v1/endpoints',
    headers: auth,
    payload: { name: 'ep', backends: [{ deployment: 'taken', weight: 1 }] },
  });
  expect(ep.statusCode, ep.body).toBe(201);
});

afterAll(async () => {
  await app?.close();
  await flotilla?.close();
  if (!passed) {
    console.log(`[isolation] kept schema ${schema} of failed bad-request tests`);
    return;
  }
  const admin = new pg.Client({ connectionString: services().databaseUrl });
  await admin.connect();
  await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
  await admin.end();
});

interface Case {
  name: string;
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  url: string;
  payload?: unknown;
  headers?: Record<string, string>;
  status: number;
  code: string;
  path: string;
}

const D = '/v1/deployments';
const ok = { name: 'fresh', command: 'sleep 1000', replicas: 0 };
const cases: Case[] = [
  // POST /v1/deployments: shapes
  {
    name: 'empty object',
    method: 'POST',
    url: D,
    payload: {},
    status: 400,
    code: 'validation',
    path: 'name',
  },
  {
    name: 'name of the wrong type',
    method: 'POST',
    url: D,
    payload: { ...ok, name: 42 },
    status: 400,
    code: 'validation',
    path: 'name',
  },
  {
    name: 'upper-case name',
    method: 'POST',
    url: D,
    payload: { ...ok, name: 'Echo' },
    status: 400,
    code: 'validation',
    path: 'name',
  },
  {
    name: 'name of 64 characters',
    method: 'POST',
    url: D,
    payload: { ...ok, name: 'a'.repeat(64) },
    status: 400,
    code: 'validation',
    path: 'name',
  },
  {
    name: 'name starting with -',
    method: 'POST',
    url: D,
    payload: { ...ok, name: '-echo' },
    status: 400,
    code: 'validation',
    path: 'name',
  },
  {
    name: 'name with an underscore',
    method: 'POST',
    url: D,
    payload: { ...ok, name: 'my_echo' },
    status: 400,
    code: 'validation',
    path: 'name',
  },
  {
    name: 'replicas as a string',
    method: 'POST',
    url: D,
    payload: { ...ok, replicas: '2' },
    status: 400,
    code: 'validation',
    path: 'replicas',
  },
  {
    name: 'negative replicas',
    method: 'POST',
    url: D,
    payload: { ...ok, replicas: -1 },
    status: 400,
    code: 'validation',
    path: 'replicas',
  },
  {
    name: 'fractional replicas',
    method: 'POST',
    url: D,
    payload: { ...ok, replicas: 1.5 },
    status: 400,
    code: 'validation',
    path: 'replicas',
  },
  {
    name: 'replicas above 1000',
    method: 'POST',
    url: D,
    payload: { ...ok, replicas: 1001 },
    status: 400,
    code: 'validation',
    path: 'replicas',
  },
  {
    name: 'unknown top-level field',
    method: 'POST',
    url: D,
    payload: { ...ok, replica_count: 2 },
    status: 400,
    code: 'validation',
    path: 'replica_count',
  },
  {
    name: 'bad routing strategy',
    method: 'POST',
    url: D,
    payload: { ...ok, routing: { strategy: 'random' } },
    status: 400,
    code: 'validation',
    path: 'routing.strategy',
  },
  {
    name: 'too many retries',
    method: 'POST',
    url: D,
    payload: { ...ok, routing: { retries: 11 } },
    status: 400,
    code: 'validation',
    path: 'routing.retries',
  },
  {
    name: 'unknown routing field',
    method: 'POST',
    url: D,
    payload: { ...ok, routing: { sticky: true } },
    status: 400,
    code: 'validation',
    path: 'routing.sticky',
  },
  {
    name: 'non-string environ value',
    method: 'POST',
    url: D,
    payload: { ...ok, environ: { LOG_LEVEL: 1 } },
    status: 400,
    code: 'validation',
    path: 'environ.LOG_LEVEL',
  },
  {
    name: 'command of the wrong type',
    method: 'POST',
    url: D,
    payload: { ...ok, command: 7 },
    status: 400,
    code: 'validation',
    path: 'command',
  },
  {
    name: 'port out of range',
    method: 'POST',
    url: D,
    payload: { ...ok, port: 70000 },
    status: 400,
    code: 'validation',
    path: 'port',
  },
  {
    name: 'negative scaling_policy.min_replicas',
    method: 'POST',
    url: D,
    payload: { ...ok, scaling_policy: { min_replicas: -1 } },
    status: 400,
    code: 'validation',
    path: 'scaling_policy.min_replicas',
  },
  {
    name: 'bad scaling_group name',
    method: 'POST',
    url: D,
    payload: { ...ok, scaling_group: 'Group 1' },
    status: 400,
    code: 'validation',
    path: 'scaling_group',
  },
  // POST /v1/deployments: meaning (checked by the embedded API / revision generation)
  {
    name: 'min_replicas above max_replicas',
    method: 'POST',
    url: D,
    payload: { ...ok, min_replicas: 3, max_replicas: 2 },
    status: 400,
    code: 'validation',
    path: 'min_replicas',
  },
  {
    name: 'replicas above max_replicas',
    method: 'POST',
    url: D,
    payload: { ...ok, replicas: 5, max_replicas: 2 },
    status: 400,
    code: 'validation',
    path: 'replicas',
  },
  {
    name: 'model_path outside the model roots',
    method: 'POST',
    url: D,
    payload: { name: 'fresh', model_path: '/etc', replicas: 0 },
    status: 400,
    code: 'validation',
    path: 'model_path',
  },
  {
    name: 'model_path that does not exist',
    method: 'POST',
    url: D,
    payload: { name: 'fresh', model_path: 'examples/none', replicas: 0 },
    status: 400,
    code: 'validation',
    path: 'model_path',
  },
  {
    name: 'unknown runtime variant',
    method: 'POST',
    url: D,
    payload: { ...ok, runtime_variant: 'tensorflow' },
    status: 400,
    code: 'validation',
    path: 'runtime_variant',
  },
  {
    name: 'health_check.interval_s not a number',
    method: 'POST',
    url: D,
    payload: { ...ok, health_check: { interval_s: 'fast' } },
    status: 400,
    code: 'validation',
    path: 'health_check.interval_s',
  },
  {
    name: 'negative resource_slots.cpu',
    method: 'POST',
    url: D,
    payload: { ...ok, resource_slots: { cpu: -1 } },
    status: 400,
    code: 'validation',
    path: 'resource_slots.cpu',
  },
  {
    name: 'cmd variant without a command',
    method: 'POST',
    url: D,
    payload: { name: 'fresh', replicas: 0 },
    status: 400,
    code: 'validation',
    path: 'command',
  },
  {
    name: 'duplicate name',
    method: 'POST',
    url: D,
    payload: { ...ok, name: 'taken' },
    status: 409,
    code: 'conflict',
    path: 'name',
  },
  // POST /v1/deployments: transport
  {
    name: 'a JSON array body',
    method: 'POST',
    url: D,
    payload: [ok],
    status: 400,
    code: 'validation',
    path: '(root)',
  },
  {
    name: 'invalid JSON',
    method: 'POST',
    url: D,
    payload: '{"name": "fresh",',
    headers: { 'content-type': 'application/json' },
    status: 400,
    code: 'validation',
    path: '(body)',
  },
  { name: 'no body', method: 'POST', url: D, status: 400, code: 'validation', path: '(body)' },
  {
    name: 'text/plain body',
    method: 'POST',
    url: D,
    payload: 'name=fresh',
    headers: { 'content-type': 'text/plain' },
    status: 415,
    code: 'unsupported_media_type',
    path: 'content-type',
  },
  {
    name: 'form body',
    method: 'POST',
    url: D,
    payload: 'name=fresh',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    status: 415,
    code: 'unsupported_media_type',
    path: 'content-type',
  },
  {
    name: 'a body over the limit',
    method: 'POST',
    url: D,
    payload: { ...ok, environ: { BIG: 'x'.repeat(1024 * 1024 + 10) } },
    status: 413,
    code: 'payload_too_large',
    path: '(body)',
  },
  // auth
  {
    name: 'no token',
    method: 'POST',
    url: D,
    payload: ok,
    headers: { authorization: '' },
    status: 401,
    code: 'unauthorized',
    path: 'authorization',
  },
  {
    name: 'a Basic header',
    method: 'POST',
    url: D,
    payload: ok,
    headers: { authorization: 'Basic YTpi' },
    status: 401,
    code: 'unauthorized',
    path: 'authorization',
  },
  {
    name: 'wrong token',
    method: 'POST',
    url: D,
    payload: ok,
    headers: { authorization: 'Bearer not-the-token' },
    status: 403,
    code: 'forbidden',
    path: 'authorization',
  },
  // unknown ids and routes
  {
    name: 'GET unknown deployment',
    method: 'GET',
    url: `${D}/nobody`,
    status: 404,
    code: 'not_found',
    path: 'id',
  },
  {
    name: 'PATCH unknown deployment',
    method: 'PATCH',
    url: `${D}/nobody`,
    payload: { environ: { A: 'b' } },
    status: 404,
    code: 'not_found',
    path: 'id',
  },
  {
    name: 'scale unknown deployment',
    method: 'POST',
    url: `${D}/nobody/scale`,
    payload: { replicas: 1 },
    status: 404,
    code: 'not_found',
    path: 'id',
  },
  {
    name: 'DELETE unknown deployment',
    method: 'DELETE',
    url: `${D}/nobody`,
    status: 404,
    code: 'not_found',
    path: 'id',
  },
  {
    name: 'events of an unknown deployment',
    method: 'GET',
    url: `${D}/nobody/events`,
    status: 404,
    code: 'not_found',
    path: 'id',
  },
  {
    name: 'logs of an unknown replica',
    method: 'GET',
    url: `${D}/taken/logs?replica=nobody-r1`,
    status: 404,
    code: 'not_found',
    path: 'replica',
  },
  {
    name: 'unknown route',
    method: 'GET',
    url: '/v1/deployment',
    status: 404,
    code: 'not_found',
    path: '(url)',
  },
  {
    name: 'unknown method on a route',
    method: 'PUT',
    url: `${D}/taken`,
    payload: ok,
    status: 404,
    code: 'not_found',
    path: '(url)',
  },
  // PATCH and scale shapes
  {
    name: 'PATCH with an unknown field',
    method: 'PATCH',
    url: `${D}/taken`,
    payload: { colour: 'red' },
    status: 400,
    code: 'validation',
    path: 'colour',
  },
  {
    name: 'PATCH renaming the deployment',
    method: 'PATCH',
    url: `${D}/taken`,
    payload: { name: 'other' },
    status: 400,
    code: 'validation',
    path: 'name',
  },
  {
    name: 'PATCH with a bad routing strategy',
    method: 'PATCH',
    url: `${D}/taken`,
    payload: { routing: { strategy: 'fastest' } },
    status: 400,
    code: 'validation',
    path: 'routing.strategy',
  },
  {
    name: 'scale with replicas as a string',
    method: 'POST',
    url: `${D}/taken/scale`,
    payload: { replicas: '3' },
    status: 400,
    code: 'validation',
    path: 'replicas',
  },
  {
    name: 'scale without a body',
    method: 'POST',
    url: `${D}/taken/scale`,
    status: 400,
    code: 'validation',
    path: '(body)',
  },
  {
    name: 'scale above max_replicas',
    method: 'POST',
    url: `${D}/taken/scale`,
    payload: { replicas: 11 },
    status: 400,
    code: 'validation',
    path: 'replicas',
  },
  {
    name: 'events with limit 0',
    method: 'GET',
    url: `${D}/taken/events?limit=0`,
    status: 400,
    code: 'validation',
    path: 'limit',
  },
  {
    name: 'events with a negative cursor',
    method: 'GET',
    url: `${D}/taken/events?after=-1`,
    status: 400,
    code: 'validation',
    path: 'after',
  },
  // illegal state changes
  {
    name: 'scale a deleted deployment',
    method: 'POST',
    url: `${D}/gone/scale`,
    payload: { replicas: 1 },
    status: 409,
    code: 'invalid_state',
    path: 'state',
  },
  {
    name: 'PATCH a deleted deployment',
    method: 'PATCH',
    url: `${D}/gone`,
    payload: { environ: { A: 'b' } },
    status: 409,
    code: 'invalid_state',
    path: 'state',
  },
  {
    name: 'delete a deleted deployment',
    method: 'DELETE',
    url: `${D}/gone`,
    status: 409,
    code: 'invalid_state',
    path: 'state',
  },
  // preview
  {
    name: 'preview with an unknown field',
    method: 'POST',
    url: '/v1/revisions/preview',
    payload: { ...ok, bogus: 1 },
    status: 400,
    code: 'validation',
    path: 'bogus',
  },
  // scaling groups
  {
    name: 'bad route_cleanup_target_statuses',
    method: 'PUT',
    url: '/v1/scaling-groups/default',
    payload: { route_cleanup_target_statuses: ['terminated'] },
    status: 400,
    code: 'validation',
    path: 'route_cleanup_target_statuses[0]',
  },
  {
    name: 'statuses not an array',
    method: 'PUT',
    url: '/v1/scaling-groups/default',
    payload: { route_cleanup_target_statuses: 'unhealthy' },
    status: 400,
    code: 'validation',
    path: 'route_cleanup_target_statuses',
  },
  {
    name: 'unknown scaling group field',
    method: 'PUT',
    url: '/v1/scaling-groups/default',
    payload: { cooldown: 5 },
    status: 400,
    code: 'validation',
    path: 'cooldown',
  },
  {
    name: 'bad scaling group name',
    method: 'GET',
    url: '/v1/scaling-groups/Bad_Group',
    status: 400,
    code: 'validation',
    path: 'name',
  },
  // endpoints
  {
    name: 'endpoint with a negative weight',
    method: 'POST',
    url: '/v1/endpoints',
    payload: { name: 'ep2', backends: [{ deployment: 'taken', weight: -1 }] },
    status: 400,
    code: 'validation',
    path: 'backends[0].weight',
  },
  {
    name: 'endpoint backend without a deployment',
    method: 'POST',
    url: '/v1/endpoints',
    payload: { name: 'ep2', backends: [{ weight: 1 }] },
    status: 400,
    code: 'validation',
    path: 'backends[0].deployment',
  },
  {
    name: 'duplicate endpoint',
    method: 'POST',
    url: '/v1/endpoints',
    payload: { name: 'ep', backends: [] },
    status: 409,
    code: 'conflict',
    path: 'name',
  },
  {
    name: 'endpoint named like a deployment',
    method: 'POST',
    url: '/v1/endpoints',
    payload: { name: 'taken', backends: [] },
    status: 409,
    code: 'conflict',
    path: 'name',
  },
  {
    name: 'endpoint PUT with another name in the body',
    method: 'PUT',
    url: '/v1/endpoints/ep',
    payload: { name: 'other', backends: [] },
    status: 400,
    code: 'validation',
    path: 'name',
  },
  {
    name: 'GET unknown endpoint',
    method: 'GET',
    url: '/v1/endpoints/nothing',
    status: 404,
    code: 'not_found',
    path: 'name',
  },
  {
    name: 'DELETE unknown endpoint',
    method: 'DELETE',
    url: '/v1/endpoints/nothing',
    status: 404,
    code: 'not_found',
    path: 'name',
  },
];

async function counts() {
  const deployments = await flotilla.store.listDeployments({ includeDeleted: true });
  const revisions = await Promise.all(deployments.map((d) => flotilla.store.listRevisions(d.id)));
  const endpoints = await flotilla.store.listEndpoints();
  const group = await flotilla.store.getScalingGroup('default');
  return {
    deployments: deployments.length,
    revisions: revisions.flat().length,
    targets: deployments.map((d) => `${d.name}:${d.target_replicas}:${d.state}`).sort(),
    endpoints: endpoints.map((e) => JSON.stringify([e.name, e.backends])).sort(),
    group: JSON.stringify(group),
  };
}

describe('bad requests', () => {
  it('the matrix holds at least 30 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });

  it.each(cases)('$name: $method $url -> $status $code at "$path", nothing written', async (c) => {
    try {
      const before = await counts();
      const headers: Record<string, string> = { ...auth, ...(c.headers ?? {}) };
      if (headers.authorization === '') delete headers.authorization;
      const res = await app.inject({
        method: c.method,
        url: c.url,
        headers,
        ...(c.payload !== undefined
          ? { payload: typeof c.payload === 'string' ? c.payload : JSON.stringify(c.payload) }
          : {}),
        ...(c.payload !== undefined && typeof c.payload !== 'string'
          ? {
              headers: {
                ...headers,
                'content-type': headers['content-type'] ?? 'application/json',
              },
            }
          : {}),
      });
      expect(res.statusCode, res.body).toBe(c.status);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      const body = res.json() as {
        error: { code: string; message: string; details: Array<{ path: string; message: string }> };
      };
      expect(Object.keys(body)).toEqual(['error']);
      expect(body.error.code).toBe(c.code);
      expect(body.error.message.length).toBeGreaterThan(0);
      expect(body.error.details.map((d) => d.path)).toContain(c.path);
      for (const d of body.error.details) expect(d.message.length).toBeGreaterThan(0);
      expect(await counts()).toEqual(before);
    } catch (err) {
      passed = false;
      throw err;
    }
  });
});
