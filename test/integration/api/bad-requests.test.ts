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
import { badRequestCases as cases } from '../../unit/api/bad-request-cases.ts';

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
