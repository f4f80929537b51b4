/**
 * How long one classifier tick takes for 10,000 routes against real Redis.
 *
 *   npx tsx bench/classify/run.ts            (REDIS_URL, default redis://127.0.0.1:6379)
 *   ROUTES=50000 RUNS=9 npx tsx bench/classify/run.ts
 *
 * Writes the records under its own key prefix, times `classifyMany` (pipelined MGET batches)
 * against a baseline measured in the same run (one GET per route, awaited in turn, as a naive
 * port of "fetch health status from Redis for all routes" would do), prints min/median and the
 * ratio, and deletes its keys. Aim: under 200 ms per tick for 10,000 routes.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import type { HealthRecord } from '../../src/domain/health.ts';
import { classifyMany, classifyRoute } from '../../src/health/classifier.ts';
import { decodeHealthRecord } from '../../src/health/health-record-codec.ts';
import { createRedisHealthStore, healthKeys } from '../../src/health/redis-health-store.ts';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const routes = Number(process.env.ROUTES ?? 10_000);
const runs = Number(process.env.RUNS ?? 7);
const baselineRuns = Number(process.env.BASELINE_RUNS ?? 3);
const keyPrefix = `bench:classify:${randomBytes(4).toString('hex')}:`;
const opts = { maxStalenessS: 300 };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const fmt = (ms: number) => `${ms.toFixed(1)} ms`;

async function deletePrefix(raw: Redis): Promise<number> {
  let cursor = '0';
  let n = 0;
  do {
    const [next, keys] = await raw.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 5000);
    cursor = next;
    if (keys.length) n += await raw.unlink(...keys);
  } while (cursor !== '0');
  return n;
}

async function main(): Promise<void> {
  const store = createRedisHealthStore({ url, keyPrefix });
  const raw = new Redis(url, { maxRetriesPerRequest: 1 });
  const keys = healthKeys(keyPrefix);
  try {
    const ids = Array.from({ length: routes }, (_, i) => `route-${String(i).padStart(6, '0')}`);
    const now = Date.now();
    // A realistic mix: mostly ready, some failing, some stale, some with no data at all.
    const t0 = performance.now();
    const writes: Promise<void>[] = [];
    ids.forEach((routeId, i) => {
      if (i % 50 === 49) return; // 2% never written → DEGRADED (no data)
      const failing = i % 20 === 3;
      const rec: HealthRecord = {
        routeId,
        ready: !failing,
        status: failing ? 500 : 200,
        latency_ms: 1 + (i % 40) / 10,
        checked_at: i % 100 === 7 ? now - 400_000 : now - (i % 5000),
        consecutive_successes: failing ? 0 : 1 + (i % 7),
        consecutive_failures: failing ? 1 + (i % 3) : 0,
        error: failing ? 'HTTP 500 from /health' : null,
      };
      writes.push(store.write(rec, 600));
    });
    await Promise.all(writes);
    console.log(
      `wrote ${writes.length} of ${routes} routes under ${keyPrefix} in ${fmt(performance.now() - t0)} (Redis ${url})`,
    );

    // Warm-up, and a correctness check: both ways classify every route the same.
    const fast = await classifyMany(store, ids, Date.now(), opts);
    const counts = new Map<string, number>();
    for (const v of fast.values()) counts.set(v.class, (counts.get(v.class) ?? 0) + 1);
    console.log(`classes: ${[...counts].map(([k, v]) => `${k} ${v}`).join(', ')}`);

    const naive = async () => {
      const out = new Map<string, string>();
      const at = Date.now();
      for (const id of ids) {
        const v = await raw.get(keys.route(id));
        const rec = v === null ? undefined : decodeHealthRecord(v);
        out.set(id, classifyRoute(rec, at, opts).class);
      }
      return out;
    };
    const check = await naive();
    for (const [id, c] of check) {
      if (fast.get(id)?.class !== c) throw new Error(`classification differs for ${id}`);
    }

    const fastMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      const s = performance.now();
      await classifyMany(store, ids, Date.now(), opts);
      fastMs.push(performance.now() - s);
    }
    const naiveMs: number[] = [];
    for (let i = 0; i < baselineRuns; i++) {
      const s = performance.now();
      await naive();
      naiveMs.push(performance.now() - s);
    }

    const fMed = median(fastMs);
    const nMed = median(naiveMs);
    console.log(
      `classifyMany, ${routes} routes, ${runs} runs:  min ${fmt(Math.min(...fastMs))}  median ${fmt(fMed)}`,
    );
    console.log(
      `baseline (GET per route), ${baselineRuns} runs: min ${fmt(Math.min(...naiveMs))}  median ${fmt(nMed)}`,
    );
    console.log(
      `ratio (baseline / classifyMany, medians): ${(nMed / fMed).toFixed(1)}x; ` +
        `aim < 200 ms per tick: ${fMed < 200 ? 'met' : 'NOT met'}`,
    );
  } finally {
    const removed = await deletePrefix(raw).catch(() => -1);
    console.log(`deleted ${removed} keys under ${keyPrefix}`);
    raw.disconnect();
    await store.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
