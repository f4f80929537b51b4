/**
 * Scale to zero at the proxy, against real replica processes: a request for a deployment at
 * zero is held while the proxy asks for an activation once, goes on when a replica is HEALTHY
 * in the table, and times out with 503 `activation_timeout` when none comes.
 */
import { describe, expect, it } from 'vitest';
import type { DeploymentRoutes } from '../../../src/domain/routing.ts';
import { createProxy } from '../../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';
import {
  client,
  deployment,
  proxyTestFixture,
  type Replica,
  startReplica,
  table,
} from './helpers.ts';

const { proxies, clients } = proxyTestFixture();

function atZero(name: string, admission?: Record<string, number>): DeploymentRoutes {
  return {
    ...deployment({ name, replicas: [], ...(admission ? { admission } : {}) }),
    activation: true,
  };
}

describe('activation at the proxy (scale to zero)', () => {
  it('holds 20 concurrent first requests, asks for one activation, and answers all 200 once a replica is HEALTHY', async () => {
    const source = createStaticTableSource(table([atZero('m')]));
    const asked: string[] = [];
    let started: Promise<Replica> | null = null;
    const startOnce = () => {
      started ??= startReplica('r1');
      return started;
    };
    const proxy = await createProxy({
      source,
      activation: {
        // The runtime's part, in small: start one replica and publish it.
        request: (id) => {
          asked.push(id);
          void startOnce().then((r) => {
            source.set(
              table([
                { ...deployment({ name: 'm', replicas: [{ replica: r }] }), activation: true },
              ]),
            );
            return r;
          });
        },
        resendMs: 60_000,
      },
    });
    proxies.push(proxy);
    const c = client();
    clients.push(c);
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => c.get(`${proxy.url}/m/hello`)),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(asked).toEqual(['dep-m']);
    expect(proxy.held('dep-m')).toBe(0);
    expect(proxy.lastRequests().get('dep-m')).toBeGreaterThan(Date.now() - 60_000);
  });

  it('answers 503 activation_timeout with Retry-After and the error shape when no replica comes in time', async () => {
    const source = createStaticTableSource(table([atZero('m')]));
    let asks = 0;
    const proxy = await createProxy({
      source,
      activation: { request: () => void asks++, timeoutMs: 300 },
    });
    proxies.push(proxy);
    const c = client();
    clients.push(c);
    const r = await c.get(`${proxy.url}/m/x`);
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    const body = JSON.parse(r.text);
    expect(body.error.code).toBe('activation_timeout');
    expect(body.error.message).toMatch(/scaled to zero/);
    expect(body.error.details).toEqual([{ path: '(request)', message: body.error.message }]);
    expect(asks).toBeGreaterThanOrEqual(1);
    expect(proxy.held('dep-m')).toBe(0);
  });

  it('bounds the held queue: past max_queue_size + max_concurrent_requests a request is refused at once', async () => {
    const source = createStaticTableSource(
      table([atZero('m', { max_queue_size: 1, max_concurrent_requests: 1 })]),
    );
    const proxy = await createProxy({
      source,
      activation: { request: () => {}, timeoutMs: 5_000 },
    });
    proxies.push(proxy);
    const c = client();
    clients.push(c);
    const held = [c.get(`${proxy.url}/m/a`), c.get(`${proxy.url}/m/b`)];
    await expect.poll(() => proxy.held('dep-m')).toBe(2);
    const refused = await c.get(`${proxy.url}/m/c`);
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.text).error.code).toBe('overloaded');
    // The held ones end when the deployment leaves the table (404: nothing to route to).
    source.set(table([]));
    expect((await Promise.all(held)).map((r) => r.status)).toEqual([404, 404]);
  });

  it('without activation in the table a deployment with no replica answers 503 no_healthy_replicas at once', async () => {
    const source = createStaticTableSource(table([deployment({ name: 'm', replicas: [] })]));
    let asks = 0;
    const proxy = await createProxy({ source, activation: { request: () => void asks++ } });
    proxies.push(proxy);
    const c = client();
    clients.push(c);
    const r = await c.get(`${proxy.url}/m/x`);
    expect(r.status).toBe(503);
    expect(JSON.parse(r.text).error.code).toBe('no_healthy_replicas');
    expect(asks).toBe(0);
  });
});
