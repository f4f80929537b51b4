import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { REQUEST_DURATION_METRIC, startLoadCounters } from '../../../src/scaling/load-counters.ts';
import { LATENCY_BUCKETS_S, type LoadReport } from '../../../src/scaling/load-report.ts';
import { LoadWindows, quantileMs } from '../../../src/scaling/load-windows.ts';

const buckets = () => new Array(LATENCY_BUCKETS_S.length + 1).fill(0);

function report(
  proxy: string,
  at: number,
  c: { requests: number; concurrency_ms: number; inflight?: number; latency?: number[] },
): LoadReport {
  return {
    proxy,
    at,
    deployments: {
      d1: {
        name: 'echo',
        inflight: c.inflight ?? 0,
        queued: 0,
        requests: c.requests,
        concurrency_ms: c.concurrency_ms,
        latency: c.latency ?? buckets(),
      },
    },
  };
}

describe('load windows (coordinator side)', () => {
  it("takes a proxy's rates over its own report interval, not the coordinator's ingest phase", () => {
    // 4 in flight all along, 2 requests/s; the proxy publishes at 0, 900 and 2,900 ms while
    // the coordinator reads at 0, 1,000, 2,000 (no new report) and 3,000.
    const w = new LoadWindows();
    const at = (ms: number) => report('a', ms, { requests: ms / 500, concurrency_ms: 4 * ms });
    w.ingest([at(0)], 0);
    w.ingest([at(900)], 1_000);
    w.ingest([at(900)], 2_000);
    w.ingest([at(2_900)], 3_000);
    for (const windowS of [1, 2, 3]) {
      const f = w.read('d1', windowS, 3_000)!;
      expect(f.concurrency).toBeCloseTo(4, 9);
      expect(f.requestsPerS).toBeCloseTo(2, 9);
    }
  });

  it('sums two proxies: requests per second, average concurrency, demand now', () => {
    const w = new LoadWindows();
    w.ingest(
      [
        report('a', 0, { requests: 100, concurrency_ms: 0 }),
        report('b', 0, { requests: 7, concurrency_ms: 0 }),
      ],
      0,
    );
    w.ingest(
      [
        report('a', 10_000, { requests: 150, concurrency_ms: 30_000, inflight: 3 }),
        report('b', 10_000, { requests: 57, concurrency_ms: 20_000, inflight: 2 }),
      ],
      10_000,
    );
    const f = w.read('d1', 60, 10_000);
    // Baselines (100 and 7) are not counted: only what happened since the first report.
    expect(f?.requestsPerS).toBeCloseTo(10);
    expect(f?.concurrency).toBeCloseTo(5);
    expect(f?.demandNow).toBe(5);
  });

  it('keeps only the slices of the window asked for', () => {
    const w = new LoadWindows();
    let conc = 0;
    w.ingest([report('a', 0, { requests: 0, concurrency_ms: 0 })], 0);
    for (let t = 1_000; t <= 60_000; t += 1_000) {
      conc += (t > 54_000 ? 10 : 1) * 1_000; // a burst in the last 6 s
      w.ingest([report('a', t, { requests: 0, concurrency_ms: conc })], t);
    }
    expect(w.read('d1', 6, 60_000)?.concurrency).toBeCloseTo(10);
    expect(w.read('d1', 60, 60_000)?.concurrency).toBeCloseTo((54 + 60) / 60);
  });

  it('a proxy that restarts (counters reset) or leaves does not make load negative', () => {
    const w = new LoadWindows();
    w.ingest([report('a', 0, { requests: 500, concurrency_ms: 90_000 })], 0);
    w.ingest([report('a', 1_000, { requests: 4, concurrency_ms: 1_000 })], 1_000);
    expect(w.read('d1', 60, 1_000)?.requestsPerS).toBeCloseTo(4);
    w.ingest([], 2_000);
    expect(w.read('d1', 60, 2_000)).toBeNull();
  });

  it('p50 and p95 from the summed histogram, interpolated in their bucket', () => {
    const counts = buckets();
    const i100ms = LATENCY_BUCKETS_S.indexOf(0.1);
    counts[i100ms] = 100; // 100 requests between 50 and 100 ms
    expect(quantileMs(counts, 0.5)).toBeCloseTo(75);
    expect(quantileMs(counts, 0.95)).toBeCloseTo(97.5);
    expect(quantileMs(buckets(), 0.5)).toBeNull();
  });
});

describe('load counters (proxy side)', () => {
  it('reads answered requests and latency from the proxy histogram, and integrates in flight', async () => {
    const registry = new Registry();
    const h = new Histogram({
      name: REQUEST_DURATION_METRIC,
      help: 'x',
      labelNames: ['deployment'],
      buckets: [...LATENCY_BUCKETS_S],
      registers: [registry],
    });
    h.observe({ deployment: 'echo' }, 0.07);
    h.observe({ deployment: 'echo' }, 0.07);
    h.observe({ deployment: 'echo' }, 3);
    let t = 0;
    const counters = startLoadCounters({
      source: {
        deployments: () => [{ deploymentId: 'd1', name: 'echo' }],
        status: () => ({ inflight: 2, queued: 1 }),
        metrics: registry,
      },
      proxyId: 'p',
      now: () => t,
      sampleMs: 60_000,
    });
    t = 2_000;
    const r = await counters.report();
    counters.stop();
    const d = r.deployments.d1;
    expect(d?.requests).toBe(3);
    expect(d?.concurrency_ms).toBe(6_000);
    expect(d?.inflight).toBe(2);
    expect(d?.queued).toBe(1);
    expect(d?.latency[LATENCY_BUCKETS_S.indexOf(0.1)]).toBe(2);
    expect(d?.latency[LATENCY_BUCKETS_S.indexOf(5)]).toBe(1);
    expect(d?.latency.reduce((a, b) => a + b, 0)).toBe(3);
  });
});
