/**
 * What only the own proxy offers on its port: /health, /ready and its metrics. Routing as a
 * client sees it (paths, headers, health states, fail static, errors, timeouts, retries,
 * aborts, draining) is the data-plane contract, run against every data plane:
 * test/integration/data-plane/contract.ts.
 */

import { describe, expect, it } from 'vitest';
import { createProxy } from '../../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';
import { client, deployment, proxyTestFixture, startReplica, table } from './helpers.ts';

const { proxies, closers: cleanups } = proxyTestFixture();

async function proxyFor(...args: Parameters<typeof table>) {
  const source = createStaticTableSource(table(...args));
  const proxy = await createProxy({ source });
  proxies.push(proxy);
  const c = client();
  cleanups.push(() => c.close());
  return { source, proxy, c };
}

describe('own proxy port', () => {
  it('answers /health and /ready itself, and serves its metrics', async () => {
    const a = await startReplica('a');
    const { proxy, c } = await proxyFor([deployment({ name: 'm', replicas: [{ replica: a }] })]);
    await c.get(`${proxy.url}/m/x`);
    expect((await c.get(`${proxy.url}/health`)).status).toBe(200);
    const ready = await c.get(`${proxy.url}/ready`);
    expect(ready.status).toBe(200);
    const m = await c.get(`${proxy.url}/metrics`);
    expect(m.text).toContain('flotilla_proxy_requests_total{deployment="m",code="2xx"} 1');
    expect(m.text).toContain('flotilla_proxy_request_duration_seconds_bucket');
    expect(m.text).toContain('flotilla_proxy_capacity{deployment="m"} 3');
  });
});
