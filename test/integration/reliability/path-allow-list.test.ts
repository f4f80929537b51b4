/**
 * Issue 15: every path of a replica was reachable through the proxy (`/echo/admin/crash`
 * crashed an echo replica). `routing.allowed_path_prefixes` limits a deployment to the paths
 * it names; off by default.
 */
import { describe, expect, it } from 'vitest';
import { deploymentRequestSchema } from '../../../src/domain/deployment-request.ts';
import { createProxy } from '../../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';
import { deployment, proxyTestFixture, startReplica, table } from '../proxy/helpers.ts';

const fx = proxyTestFixture();

async function proxyFor(allowed: string[] | undefined) {
  const replica = await startReplica('allow-1');
  const d = deployment({ name: 'svc', replicas: [{ replica }] });
  if (allowed) d.routing.allowed_path_prefixes = allowed;
  const source = createStaticTableSource(table([d]));
  const proxy = await createProxy({ source });
  fx.proxies.push(proxy);
  fx.closers.push(() => source.close());
  return proxy;
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

describe('routing.allowed_path_prefixes', () => {
  it('forwards paths under an allowed prefix and answers 404 in the error shape for others', async () => {
    const proxy = await proxyFor(['/v1/', '/healthz']);
    expect((await get(`${proxy.url}/svc/v1/chat?x=1`)).status).toBe(200);
    expect((await get(`${proxy.url}/svc/healthz`)).status).toBe(200);
    for (const path of ['/admin/crash', '/', '/v2/x', '/v1', '/v1/..%2Fadmin', '/v1/../admin']) {
      const res = await get(`${proxy.url}/svc${path}`);
      expect(res.status, path).toBe(404);
      const body = JSON.parse(res.body) as { error: { code: string; details: unknown[] } };
      expect(body.error.code, path).toBe('not_found');
      expect(body.error.details.length).toBeGreaterThan(0);
    }
  });

  it('is off by default: every path is forwarded', async () => {
    const proxy = await proxyFor(undefined);
    expect((await get(`${proxy.url}/svc/admin/anything`)).status).toBe(200);
  });

  it('is accepted in a deployment request and refused with a field path when malformed', () => {
    const base = { name: 'svc', model_path: 'm' };
    const ok = deploymentRequestSchema.safeParse({
      ...base,
      routing: { allowed_path_prefixes: ['/v1/'] },
    });
    expect(ok.success, JSON.stringify(ok.error?.issues)).toBe(true);
    for (const bad of ['v1/', '/v1/../admin', '/a b', '/%2f']) {
      const r = deploymentRequestSchema.safeParse({
        ...base,
        routing: { allowed_path_prefixes: [bad] },
      });
      expect(r.success, bad).toBe(false);
      expect(r.error?.issues[0]?.path).toEqual(['routing', 'allowed_path_prefixes', 0]);
    }
  });
});
