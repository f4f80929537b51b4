/**
 * The HTTP API over a real Flotilla with echo replicas, PostgreSQL, Redis and the in-process
 * proxy: the happy paths, the OpenAPI document, /metrics accepted by `promtool check
 * metrics`, and /ready naming what is missing.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../../src/api/build-app.ts';
import { createMetrics } from '../../../src/api/metrics.ts';
import { deploymentViewSchema } from '../../../src/api/schemas.ts';
import { deploymentRequestSchema } from '../../../src/domain/deployment-request.ts';
import { createFlotilla, type DeploymentView, type Flotilla } from '../../../src/index.ts';
import { isolatedDatabase, isolatedPrefix, services } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';

const repo = resolve(import.meta.dirname, '../../..');
let flotilla: Flotilla | null = null;
let app: FastifyInstance | null = null;
afterEach(async () => {
  await app?.close();
  await flotilla?.close();
  app = null;
  flotilla = null;
});

function promtool(text: string): { status: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error(
      'promtool is not installed: `apt-get install -y prometheus` (Debian package) provides it',
    );
  }
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

async function start(ctx: Parameters<typeof isolatedDatabase>[0]) {
  const { url } = await isolatedDatabase(ctx);
  const metrics = createMetrics();
  flotilla = await createFlotilla({
    databaseUrl: url,
    redisUrl: services().redisUrl,
    redisKeyPrefix: isolatedPrefix(ctx),
    dataDir: mkdtempSync(join(tmpdir(), 'flotilla-api-')),
    modelRoots: [repo],
    runtime: { healthCheckIntervalS: 1, shards: 2 },
    observeFlush: metrics.observeFlush,
    onHealthCheck: metrics.healthCheck,
  });
  app = buildApp({ flotilla, metrics });
  return { f: flotilla, a: app };
}

describe('HTTP API with real replicas', () => {
  it('deploys, reports load, scales, serves metrics promtool accepts, and deletes', async (ctx) => {
    const { f, a } = await start(ctx);
    const created = await a.inject({
      method: 'POST',
      url: '/v1/deployments',
      payload: {
        name: 'echo',
        model_path: join(repo, 'examples/echo'),
        replicas: 2,
        environ: { OPENAI_API_KEY: 'sk-very-secret' },
      },
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.headers.location).toMatch(/^\/v1\/deployments\//);
    const v0 = created.json() as DeploymentView;
    expect(v0.state).toMatch(/PENDING|PROVISIONING/);
    expect(v0.revision?.environ.OPENAI_API_KEY).toBe('***');
    expect(JSON.stringify(v0)).not.toContain('sk-very-secret');

    const running = await waitFor(
      async () => {
        const r = await a.inject({ url: '/v1/deployments/echo' });
        const v = r.json() as DeploymentView & { load: unknown };
        return v.state === 'RUNNING' && v.healthy_replicas === 2 ? v : null;
      },
      { timeoutMs: 60_000, message: 'echo never RUNNING with 2 HEALTHY replicas' },
    );
    expect(running.reason).toBeNull();
    expect(running.load).toEqual({
      level: 'healthy',
      inflight: 0,
      queued: 0,
      capacity: expect.any(Number),
    });
    // The response schema documents every field a real view has, and accepts it.
    // (`autoscaling` and `scale_to_zero` only with a scaling_policy that asks for them).
    const optional = ['autoscaling', 'scale_to_zero'];
    expect(Object.keys(running).sort()).toEqual(
      Object.keys(deploymentViewSchema.shape)
        .filter((k) => !optional.includes(k))
        .sort(),
    );
    expect(deploymentViewSchema.safeParse(running).success).toBe(true);

    await waitFor(
      () =>
        f.routingTable().deployments[0]?.routes.filter((r) => r.state === 'HEALTHY').length === 2,
    );
    const proxied = await fetch(`${f.proxyUrl}/echo/v1/models`);
    expect(proxied.status).toBe(200);
    expect(proxied.headers.get('x-flotilla-replica')).toMatch(/-r\d+$/);

    const list = (await a.inject({ url: '/v1/deployments' })).json() as { items: DeploymentView[] };
    expect(list.items.map((d) => d.name)).toEqual(['echo']);

    const scaled = await a.inject({
      method: 'POST',
      url: '/v1/deployments/echo/scale',
      payload: { replicas: 3 },
    });
    expect(scaled.statusCode, scaled.body).toBe(200);
    expect((scaled.json() as DeploymentView).target_replicas).toBe(3);
    await waitFor(async () => (await f.get('echo')).healthy_replicas === 3, {
      timeoutMs: 60_000,
      message: 'never 3 HEALTHY replicas',
    });

    const events = (await a.inject({ url: '/v1/deployments/echo/events?limit=5' })).json() as {
      items: Array<{ id: number }>;
      next: number | null;
    };
    expect(events.items).toHaveLength(5);
    expect(events.next).not.toBeNull();
    const page2 = (
      await a.inject({ url: `/v1/deployments/echo/events?limit=5&after=${events.next}` })
    ).json() as { items: Array<{ id: number }> };
    expect(page2.items[0]!.id).toBeGreaterThan(events.items[4]!.id);

    const logs = await a.inject({ url: '/v1/deployments/echo/logs' });
    expect(logs.statusCode).toBe(200);
    expect(logs.headers['content-type']).toMatch(/^text\/plain/);
    expect(logs.body).toContain('echo-server listening');

    const text = (await a.inject({ url: '/metrics' })).body;
    for (const name of [
      'flotilla_deployments_created_total 1',
      'flotilla_scaling_events_total{direction="up",source="api"} 1',
      'flotilla_replicas{state="HEALTHY"} 3',
      'flotilla_routes{state="HEALTHY"} 3',
      'flotilla_deployments{state="RUNNING"} 1',
      'flotilla_actors 7',
      'flotilla_snapshot_write_seconds_count',
      'flotilla_health_checks_total{result="passed"}',
      'flotilla_process_cpu_seconds_total',
      'flotilla_proxy_requests_total{deployment="echo",code="2xx"} 1',
    ]) {
      expect(text).toContain(name);
    }
    const check = promtool(text);
    expect(check.output, check.output).toBe('');
    expect(check.status).toBe(0);

    const del = await a.inject({ method: 'DELETE', url: '/v1/deployments/echo' });
    expect(del.statusCode, del.body).toBe(202);
    await waitFor(async () => (await f.get('echo')).state === 'TERMINATED', { timeoutMs: 60_000 });
    expect((await a.inject({ url: '/metrics' })).body).toContain(
      'flotilla_deployments_deleted_total 1',
    );
  });

  it('PATCH makes a new revision and keeps fields it was not given', async (ctx) => {
    const { f, a } = await start(ctx);
    const created = await a.inject({
      method: 'POST',
      url: '/v1/deployments',
      payload: {
        name: 'idle',
        runtime_variant: 'custom',
        command: 'sleep 1000',
        port: 8000,
        replicas: 0,
      },
    });
    expect(created.statusCode, created.body).toBe(201);
    const patched = await a.inject({
      method: 'PATCH',
      url: '/v1/deployments/idle',
      payload: { environ: { LOG_LEVEL: 'debug' } },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    const v = patched.json() as DeploymentView;
    expect(v.revision_id).not.toBe((created.json() as DeploymentView).revision_id);
    expect(v.revision?.runtime_variant).toBe('custom');
    expect(v.revision?.environ.LOG_LEVEL).toBe('debug');
    expect((await f.store.listRevisions(v.id)).length).toBe(2);
  });

  it('scaling groups and endpoints round-trip; the proxy gets the endpoint', async (ctx) => {
    const { f, a } = await start(ctx);
    const g0 = (await a.inject({ url: '/v1/scaling-groups/gpu' })).json();
    expect(g0).toMatchObject({ name: 'gpu', route_cleanup_target_statuses: ['unhealthy'] });
    const put = await a.inject({
      method: 'PUT',
      url: '/v1/scaling-groups/gpu',
      payload: { route_cleanup_target_statuses: ['unhealthy', 'degraded'] },
    });
    expect(put.statusCode, put.body).toBe(200);
    const put2 = await a.inject({
      method: 'PUT',
      url: '/v1/scaling-groups/gpu',
      payload: { settings: { note: 'a' } },
    });
    expect(put2.json()).toMatchObject({
      route_cleanup_target_statuses: ['unhealthy', 'degraded'],
      settings: { note: 'a' },
    });

    const ep = await a.inject({
      method: 'POST',
      url: '/v1/endpoints',
      payload: { name: 'chat', backends: [{ deployment: 'a', weight: 1 }] },
    });
    expect(ep.statusCode, ep.body).toBe(201);
    const replaced = await a.inject({
      method: 'PUT',
      url: '/v1/endpoints/chat',
      payload: { backends: [{ deployment: 'b', weight: 3 }] },
    });
    expect(replaced.statusCode, replaced.body).toBe(200);
    expect((await a.inject({ url: '/v1/endpoints/chat' })).json()).toMatchObject({
      backends: [{ deployment: 'b', weight: 3 }],
    });
    await waitFor(() => f.routingTable().endpoints.some((e) => e.name === 'chat'));
    expect(
      ((await a.inject({ url: '/v1/endpoints' })).json() as { items: unknown[] }).items,
    ).toHaveLength(1);
    expect((await a.inject({ method: 'DELETE', url: '/v1/endpoints/chat' })).statusCode).toBe(204);
    await waitFor(() => !f.routingTable().endpoints.some((e) => e.name === 'chat'));
  });

  it('serves an OpenAPI document generated from the zod schemas', async (ctx) => {
    const { a } = await start(ctx);
    const res = await a.inject({ url: '/v1/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json() as {
      openapi: string;
      paths: Record<
        string,
        Record<
          string,
          {
            requestBody?: {
              content: Record<
                string,
                { schema: { properties: Record<string, unknown>; required?: string[] } }
              >;
            };
          }
        >
      >;
    };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths).sort()).toEqual(
      [
        '/health',
        '/ready',
        '/v1/deployments',
        '/v1/deployments/{id}',
        '/v1/deployments/{id}/scale',
        '/v1/deployments/{id}/events',
        '/v1/deployments/{id}/logs',
        '/v1/revisions/preview',
        '/v1/scaling-groups/{name}',
        '/v1/endpoints',
        '/v1/endpoints/{name}',
      ].sort(),
    );
    const body =
      doc.paths['/v1/deployments']!.post!.requestBody!.content['application/json']!.schema;
    expect(Object.keys(body.properties).sort()).toEqual(
      Object.keys(deploymentRequestSchema.shape).sort(),
    );
    expect(body.required).toEqual(['name']);
    expect(JSON.stringify(body.properties.name)).toContain('^[a-z0-9]');
  });

  it('/ready answers 503 naming what is missing once the runtime is closed; /health stays 200', async (ctx) => {
    const { f, a } = await start(ctx);
    expect((await a.inject({ url: '/ready' })).json()).toEqual({ ready: true, missing: [] });
    await f.close();
    const res = await a.inject({ url: '/ready' });
    expect(res.statusCode).toBe(503);
    const body = res.json() as { ready: boolean; missing: string[]; error: { code: string } };
    expect(body.ready).toBe(false);
    expect(body.error.code).toBe('dependency_unavailable');
    expect(body.missing).toContain('actors not restored yet');
    expect(body.missing.some((m) => m.startsWith('database'))).toBe(true);
    expect((await a.inject({ url: '/health' })).statusCode).toBe(200);
  });
});
