/**
 * Failures on live traffic: a replica killed under load, and passive outlier detection.
 */
import { describe, expect, it } from 'vitest';
import type { ProxyEvent } from '../../../src/proxy/proxy-events.ts';
import { createProxy } from '../../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';
import {
  client,
  countBy,
  deployment,
  proxyTestFixture,
  startReplica,
  table,
  waitFor,
} from './helpers.ts';

const { proxies, clients } = proxyTestFixture();

describe('resilience', () => {
  it('loses no request when a replica is killed under steady GET load (retries on)', async () => {
    const rs = await Promise.all(['a', 'b', 'c'].map((id) => startReplica(id, { DELAY_MS: 5 })));
    const source = createStaticTableSource(
      table([
        deployment({
          name: 'm',
          retries: 2,
          admission: { max_concurrent_requests: 16 },
          replicas: rs.map((replica) => ({ replica })),
        }),
      ]),
    );
    const proxy = await createProxy({ source });
    proxies.push(proxy);
    const events: ProxyEvent[] = [];
    proxy.onEvent((e) => events.push(e));
    const c = client();
    clients.push(c);

    const results: { status: number; replica: string }[] = [];
    const errors: unknown[] = [];
    let stop = false;
    const loops = Array.from({ length: 8 }, async () => {
      while (!stop) {
        try {
          const r = await c.get(`${proxy.url}/m/x`);
          results.push({ status: r.status, replica: String(r.headers['x-flotilla-replica']) });
        } catch (err) {
          errors.push(err);
        }
      }
    });
    await waitFor(() => results.length >= 300, 'steady load');
    const killedAt = results.length;
    await rs[1]!.kill('SIGKILL');
    await waitFor(() => results.length >= killedAt + 600, 'load after the kill', 30_000);
    stop = true;
    await Promise.all(loops);

    const bad = results.filter((r) => r.status !== 200);
    console.log(
      `${results.length} requests, killed b after ${killedAt}; statuses ${JSON.stringify(countBy(results.map((r) => String(r.status))))}; after kill ${JSON.stringify(countBy(results.slice(killedAt + 50).map((r) => r.replica)))}; events ${events.map((e) => e.type).join(',')}`,
    );
    expect(errors).toEqual([]);
    expect(bad).toEqual([]);
    // The dead replica left this proxy's rotation without any table change.
    expect(events.some((e) => e.type === 'outlier.ejected' && e.replicaId === 'b')).toBe(true);
  });

  it('ejects a replica that keeps failing, records it, and brings it back after the backoff', async () => {
    const good = await startReplica('good');
    const bad = await startReplica('bad', { STATUS: 500 });
    const source = createStaticTableSource(
      table([
        deployment({ name: 'm', retries: 0, replicas: [{ replica: good }, { replica: bad }] }),
      ]),
    );
    const proxy = await createProxy({
      source,
      outlier: { consecutive_failures: 3, base_ejection_ms: 400 },
    });
    proxies.push(proxy);
    const events: ProxyEvent[] = [];
    proxy.onEvent((e) => events.push(e));
    const c = client();
    clients.push(c);

    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await c.get(`${proxy.url}/m/x`)).status);
    expect(statuses.filter((s) => s === 500)).toHaveLength(3);
    const ejected = events.find((e) => e.type === 'outlier.ejected');
    expect(ejected).toMatchObject({
      type: 'outlier.ejected',
      deployment: 'm',
      replicaId: 'bad',
      reason: 'status_5xx',
      consecutiveFailures: 3,
      ejectionMs: 400,
    });
    expect(proxy.status('m').capacity).toBe(3);
    for (let i = 0; i < 10; i++) {
      expect((await c.get(`${proxy.url}/m/x`)).headers['x-flotilla-replica']).toBe('good');
    }
    const text = await proxy.metrics.metrics();
    expect(text).toContain('flotilla_proxy_outlier_ejections_total{deployment="m"} 1');
    await waitFor(
      () => events.some((e) => e.type === 'outlier.returned'),
      'return after backoff',
      5_000,
    );
    expect(proxy.status('m').capacity).toBe(6);
    // On probation: one more failure ejects it again, for twice as long.
    const seen: string[] = [];
    for (let i = 0; i < 4; i++)
      seen.push(String((await c.get(`${proxy.url}/m/x`)).headers['x-flotilla-replica']));
    expect(seen.filter((s) => s === 'bad')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'outlier.ejected').at(-1)).toMatchObject({
      ejectionMs: 800,
    });
  });
});
