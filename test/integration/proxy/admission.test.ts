/**
 * Admission control against a real slow replica: graduated rejection under saturation,
 * priority order in the queue, queue timeout, and /health staying responsive; per-replica
 * defaults from the runtime (64 streams to a replica launched for 256) and the adaptive limit
 * against an echo replica that slows down past a concurrency level.
 */
import { describe, expect, it } from 'vitest';
import { createProxy, type FlotillaProxy } from '../../../src/proxy/proxy-server.ts';
import { createStaticTableSource } from '../../../src/proxy/routing-table-source.ts';
import { seededRandom } from '../../unit/proxy/seeded-random.ts';
import {
  client,
  countBy,
  deployment,
  proxyTestFixture,
  startEchoReplica,
  startReplica,
  table,
  waitFor,
} from './helpers.ts';

const { proxies, clients } = proxyTestFixture();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('admission control', () => {
  it('saturated by 200 clients: graduated rejections, bounded queue, no hang, /health answering', async () => {
    const SEED = 8;
    const slow = await startReplica('slow', { DELAY_MS: 200 });
    // Documented defaults: 3 per replica, queue 50 (40 for ordinary priority), rejection from 0.7.
    const source = createStaticTableSource(
      table([deployment({ name: 'm', replicas: [{ replica: slow }] })]),
    );
    const proxy = await createProxy({ source, random: seededRandom(SEED) });
    proxies.push(proxy);
    const c = client(512);
    clients.push(c);
    const rnd = seededRandom(SEED + 1);

    let stop = false;
    const outcomes: { status: number; code?: string; load?: number; ms: number }[] = [];
    const health: number[] = [];
    const samples: ReturnType<FlotillaProxy['status']>[] = [];

    const healthLoop = (async () => {
      while (!stop) {
        const t0 = performance.now();
        const r = await c.get(`${proxy.url}/health`);
        health.push(performance.now() - t0);
        expect(r.status).toBe(200);
        samples.push(proxy.status('m'));
        await sleep(25);
      }
    })();
    const clientsDone = Array.from({ length: 200 }, async (_, i) => {
      const headers: Record<string, string> = i % 2 === 0 ? { 'x-flotilla-priority': '1' } : {};
      while (!stop) {
        const t0 = performance.now();
        const r = await c.get(`${proxy.url}/m/x`, { headers });
        const ms = performance.now() - t0;
        if (r.status === 200) outcomes.push({ status: 200, ms });
        else {
          const load = Number(r.headers['x-flotilla-load']);
          outcomes.push({ status: r.status, code: JSON.parse(r.text).error.code, load, ms });
          expect(r.headers['retry-after']).toBe('1');
          await sleep(10 + rnd() * 40);
        }
      }
    });
    await sleep(3_000);
    stop = true;
    const t0 = performance.now();
    await Promise.all([...clientsDone, healthLoop]);
    const drainMs = performance.now() - t0;

    const ok = outcomes.filter((o) => o.status === 200);
    const rejected = outcomes.filter((o) => o.status !== 200);
    const bins = countBy(rejected.map((o) => (Math.floor(o.load! * 20) / 20).toFixed(2)));
    const sortedHealth = [...health].sort((a, b) => a - b);
    const levels = countBy(samples.map((s) => s.level));
    console.log(
      `seed ${SEED}: ${ok.length} served, ${rejected.length} rejected ${JSON.stringify(countBy(rejected.map((o) => o.code)))}; ` +
        `rejections by load ${JSON.stringify(bins)}; levels ${JSON.stringify(levels)}; ` +
        `/health p50 ${sortedHealth[Math.floor(health.length / 2)]!.toFixed(1)} ms max ${sortedHealth.at(-1)!.toFixed(1)} ms over ${health.length}; ` +
        `slowest served ${Math.max(...ok.map((o) => o.ms)).toFixed(0)} ms; drained in ${drainMs.toFixed(0)} ms`,
    );

    expect(ok.length).toBeGreaterThan(20);
    expect(rejected.length).toBeGreaterThan(0);
    for (const o of rejected) {
      expect(o.status).toBe(503);
      expect(o.code).toBe('overloaded');
      // None below 70 % load.
      expect(o.load!).toBeGreaterThanOrEqual(0.7);
    }
    // The queue filled up to the top (priority traffic), where everything is refused.
    expect(rejected.some((o) => o.load! >= 1)).toBe(true);
    // Never more admitted than the room: concurrency and queue bounds held throughout.
    for (const s of samples) {
      expect(s.inflight).toBeLessThanOrEqual(s.capacity);
      expect(s.queued).toBeLessThanOrEqual(50);
    }
    expect((await slow.stats()).maxInflight).toBeLessThanOrEqual(3);
    expect(levels.critical ?? 0).toBeGreaterThan(0);
    // No hang: every client got an answer, and /health kept answering quickly.
    expect(drainMs).toBeLessThan(15_000);
    expect(sortedHealth.at(-1)!).toBeLessThan(1_000);
    const metrics = await proxy.metrics.metrics();
    expect(metrics).toMatch(
      /flotilla_proxy_rejections_total\{deployment="m",reason="overloaded"\} [1-9]/,
    );
    expect(metrics).toMatch(/flotilla_proxy_queue_depth\{deployment="m"\} \d+/);
  });

  it('starts queued requests higher priority first, FIFO within a priority', async () => {
    const r = await startReplica('one');
    const source = createStaticTableSource(
      table([
        deployment({
          name: 'm',
          admission: { max_concurrent_requests: 1 },
          replicas: [{ replica: r }],
        }),
      ]),
    );
    const proxy = await createProxy({ source });
    proxies.push(proxy);
    const c = client();
    clients.push(c);
    const order: string[] = [];
    const send = (name: string, priority: number, delay = 20) =>
      c
        .get(`${proxy.url}/m/x?delay=${delay}`, {
          headers: { 'x-flotilla-priority': String(priority) },
        })
        .then((res) => {
          expect(res.status).toBe(200);
          order.push(name);
        });
    const all = [send('blocker', 0, 400)];
    await waitFor(() => proxy.status('m').inflight === 1, 'blocker in flight');
    for (const [name, p] of [
      ['low1', 0],
      ['high1', 5],
      ['low2', 0],
      ['mid', 2],
      ['high2', 5],
    ] as const) {
      all.push(send(name, p));
      await waitFor(() => proxy.status('m').queued === all.length - 1, `${name} queued`);
    }
    expect(proxy.status('m').level).toBe('stressed');
    await Promise.all(all);
    expect(order).toEqual(['blocker', 'high1', 'high2', 'mid', 'low1', 'low2']);
  });

  it('answers 503 overloaded when a request waits in the queue past its queue timeout', async () => {
    const r = await startReplica('one');
    const source = createStaticTableSource(
      table([
        deployment({
          name: 'm',
          admission: { max_concurrent_requests: 1, queue_timeout_s: 0.3 },
          replicas: [{ replica: r }],
        }),
      ]),
    );
    const proxy = await createProxy({ source });
    proxies.push(proxy);
    const c = client();
    clients.push(c);
    const blocker = c.get(`${proxy.url}/m/x?delay=1500`);
    await waitFor(() => proxy.status('m').inflight === 1, 'blocker in flight');
    const t0 = performance.now();
    const waited = await c.get(`${proxy.url}/m/x`);
    const ms = performance.now() - t0;
    expect(waited.status).toBe(503);
    expect(JSON.parse(waited.text).error.code).toBe('overloaded');
    expect(ms).toBeGreaterThanOrEqual(250);
    expect(ms).toBeLessThan(1400);
    expect((await blocker).status).toBe(200);
    expect(await proxy.metrics.metrics()).toContain(
      'flotilla_proxy_timeouts_total{deployment="m",kind="queue"} 1',
    );
  });

  /** `n` concurrent streaming chat completions of `words` tokens each; statuses and bodies. */
  function streams(c: ReturnType<typeof client>, url: string, n: number, words = 40) {
    const content = Array.from({ length: words }, (_, i) => `w${i}`).join(' ');
    const body = JSON.stringify({
      model: 'echo',
      stream: true,
      messages: [{ role: 'user', content }],
    });
    return Array.from({ length: n }, () =>
      c.get(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      }),
    );
  }

  it('lets 64 streams run at once on a replica launched for 256 (vLLM default), none queued or refused', async () => {
    const echo = await startEchoReplica('echo-1', ['--token-latency-ms', '100']);
    const m = {
      ...deployment({ name: 'm', replicas: [{ replica: echo }] }),
      // What the control plane puts in the table for `vllm serve` without --max-num-seqs.
      replica_concurrency: { max_concurrent_requests: 256, max_limit: 256, source: 'default' },
    };
    // The same replica under the guide's small profile (the old default, 3 per replica).
    const small = {
      ...deployment({
        id: 'dep-small',
        name: 'small',
        replicas: [{ replica: echo, routeId: 'route-small' }],
      }),
      admission: { profile: 'small' as const },
    };
    const proxy = await createProxy({ source: createStaticTableSource(table([m, small])) });
    proxies.push(proxy);
    const c = client(512);
    clients.push(c);

    expect(proxy.status('m').capacity).toBe(256);
    const all = streams(c, `${proxy.url}/m`, 64);
    // All 64 reach the replica together: 40 tokens × 100 ms keep each stream open ≥ 4 s.
    await waitFor(() => proxy.status('m').inflight === 64, '64 streams in flight at once');
    expect(proxy.status('m').queued).toBe(0);
    const done = await Promise.all(all);
    expect(done.map((r) => r.status)).toEqual(Array(64).fill(200));
    for (const r of done) expect(r.text).toContain('data: [DONE]');

    // The small profile caps the same replica at 3: the rest wait in the queue or are refused.
    expect(proxy.status('small').capacity).toBe(3);
    const capped = streams(c, `${proxy.url}/small`, 64, 8);
    await waitFor(() => proxy.status('small').queued > 0, 'requests queued behind 3 slots');
    expect(proxy.status('small').inflight).toBe(3);
    const statuses = (await Promise.all(capped)).map((r) => r.status);
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(0);
  });

  it('adaptive mode: starts at the fixed default, grows under load, never past the variant maximum', async () => {
    const echo = await startEchoReplica('echo-slow', [
      '--token-latency-ms',
      '10',
      '--slow-above',
      '16',
    ]);
    const m = {
      ...deployment({ name: 'm', replicas: [{ replica: echo }] }),
      admission: { mode: 'adaptive' as const, max_queue_size: 200 },
      replica_concurrency: { max_concurrent_requests: 8, max_limit: 24, source: 'conservative' },
    };
    const proxy = await createProxy({ source: createStaticTableSource(table([m])) });
    proxies.push(proxy);
    const c = client(512);
    clients.push(c);
    // Before any traffic: the fixed-mode default of the variant (8).
    expect(proxy.status('m').capacity).toBe(8);

    let stop = false;
    const samples: ReturnType<FlotillaProxy['status']>[] = [];
    const statuses: number[] = [];
    const loops = Array.from({ length: 40 }, async () => {
      while (!stop) {
        const [r] = streams(c, `${proxy.url}/m`, 1, 10);
        statuses.push((await r!).status);
      }
    });
    const sampler = (async () => {
      while (!stop) {
        samples.push(proxy.status('m'));
        await sleep(20);
      }
    })();
    try {
      await waitFor(() => proxy.status('m').capacity > 8, 'the limit grows past 8', 20_000);
    } finally {
      stop = true;
      await Promise.all([...loops, sampler]);
    }
    console.log(
      `adaptive capacity over time: ${samples
        .filter((_, i) => i % 10 === 0)
        .map((s) => s.capacity)
        .join(' ')}`,
    );
    for (const s of samples) {
      expect(s.capacity).toBeLessThanOrEqual(24);
      // A shrinking limit does not cut running requests: in flight may exceed the new
      // capacity for a moment, never the ceiling.
      expect(s.inflight).toBeLessThanOrEqual(24);
    }
    expect(statuses.filter((x) => x !== 200 && x !== 503)).toEqual([]);
    expect(statuses.filter((x) => x === 200).length).toBeGreaterThan(0);
  });
});
