/**
 * Power of two choices over 1,000 requests with a seeded random source (own proxy only).
 * Round robin, weighted and least connections are in the data-plane contract
 * (test/integration/data-plane/contract.ts), run against every data plane.
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
