/**
 * Request distribution per balancing strategy over 1,000 requests to real replica processes.
 */
import { describe, expect, it } from 'vitest';
import type { BalancingStrategy } from '../../../src/domain/routing.ts';
import { createProxy } from '../../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';
import { seededRandom } from '../../unit/proxy/seeded-random.ts';
import {
  client,
  countBy,
  deployment,
  proxyTestFixture,
  type Replica,
  runConcurrent,
  startReplica,
  table,
} from './helpers.ts';

const { proxies, clients } = proxyTestFixture();

const SEED = 20240611;
// Generous per-replica concurrency: these tests measure balancing, not admission.
const ADMISSION = { max_concurrent_requests: 64 };

async function distribute(
  strategy: BalancingStrategy,
  replicas: { replica: Replica; weight?: number }[],
  total: number,
  concurrency: number,
): Promise<Record<string, number>> {
  const source = createStaticTableSource(
    table([deployment({ name: 'm', strategy, admission: ADMISSION, replicas })]),
  );
  const proxy = await createProxy({ source, random: seededRandom(SEED) });
  proxies.push(proxy);
  const c = client();
  clients.push(c);
  const seen = await runConcurrent(total, concurrency, async () => {
    const r = await c.get(`${proxy.url}/m/x`);
    expect(r.status).toBe(200);
    return r.headers['x-flotilla-replica'] as string;
  });
  const counts = countBy(seen);
  console.log(`${strategy} (seed ${SEED}): ${JSON.stringify(counts)}`);
  return counts;
}

describe('balancing over 1,000 requests', () => {
  it('round robin gives each replica its share within ±1', async () => {
    const rs = await Promise.all(['a', 'b', 'c'].map((id) => startReplica(id)));
    const counts = await distribute(
      'round_robin',
      rs.map((replica) => ({ replica })),
      1000,
      8,
    );
    for (const id of ['a', 'b', 'c'])
      expect(Math.abs(counts[id]! - 1000 / 3)).toBeLessThanOrEqual(1);
  });

  it('weighted follows the route weights within ±5%', async () => {
    const rs = await Promise.all(['a', 'b', 'c'].map((id) => startReplica(id)));
    const weights = { a: 1, b: 3, c: 6 };
    const counts = await distribute(
      'weighted',
      rs.map((replica) => ({ replica, weight: weights[replica.id as keyof typeof weights] })),
      1000,
      8,
    );
    for (const [id, w] of Object.entries(weights)) {
      const expected = (1000 * w) / 10;
      expect(Math.abs(counts[id]! - expected)).toBeLessThanOrEqual(expected * 0.05);
    }
  });

  it('least connections sends most traffic to the faster replica under uneven latency', async () => {
    const fast = await startReplica('fast', { DELAY_MS: 2 });
    const slow = await startReplica('slow', { DELAY_MS: 40 });
    const counts = await distribute(
      'least_connections',
      [{ replica: fast }, { replica: slow }],
      1000,
      16,
    );
    expect(counts.fast! + counts.slow!).toBe(1000);
    expect(counts.fast!).toBeGreaterThan(2 * counts.slow!);
  });

  it('power of two choices keeps the slow replica below an even share under uneven latency', async () => {
    const rs = [
      await startReplica('fast1', { DELAY_MS: 2 }),
      await startReplica('fast2', { DELAY_MS: 2 }),
      await startReplica('slow', { DELAY_MS: 40 }),
    ];
    const counts = await distribute(
      'power_of_two_choices',
      rs.map((replica) => ({ replica })),
      1000,
      16,
    );
    expect(counts.fast1! + counts.fast2! + counts.slow!).toBe(1000);
    expect(counts.slow!).toBeLessThan(1000 / 3);
    expect(counts.fast1!).toBeGreaterThan(counts.slow!);
    expect(counts.fast2!).toBeGreaterThan(counts.slow!);
  });
});
