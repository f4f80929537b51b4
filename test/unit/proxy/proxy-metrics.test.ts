import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createProxyMetrics } from '../../../src/proxy/proxy-metrics.ts';

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The same two metrics fed the prom-client way (a label child per call), as a reference. */
function reference() {
  const registry = new Registry();
  const requests = new Counter({
    name: 'flotilla_proxy_requests_total',
    help: 'Requests answered by the proxy, by deployment and status class',
    labelNames: ['deployment', 'code'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'flotilla_proxy_request_duration_seconds',
    help: 'Time from arrival at the proxy to the end of the response',
    buckets: BUCKETS,
    labelNames: ['deployment'],
    registers: [registry],
  });
  return {
    registry,
    finished(deployment: string, status: number, seconds: number) {
      const code = `${Math.min(5, Math.max(1, Math.floor(status / 100)))}xx`;
      requests.labels({ deployment, code }).inc();
      duration.labels({ deployment }).observe(seconds);
    },
    forget(deployment: string) {
      for (const code of ['1xx', '2xx', '3xx', '4xx', '5xx']) requests.remove({ deployment, code });
      duration.remove({ deployment });
    },
  };
}

/** The lines of the two metrics in an exposition, sorted (series order means nothing to Prometheus). */
async function answeredLines(registry: Registry): Promise<string[]> {
  const text = await registry.metrics();
  return text
    .split('\n')
    .filter(
      (l) =>
        l.includes('flotilla_proxy_requests_total') ||
        l.includes('flotilla_proxy_request_duration_seconds'),
    )
    .sort();
}

describe('proxy metrics counted on the request path', () => {
  it('expose requests by status class and the duration histogram exactly as prom-client observations would', async () => {
    const ours = createProxyMetrics(() => []);
    const ref = reference();
    const a = ours.forDeployment('a');
    const b = ours.forDeployment('b');
    const answers: [string, number, number][] = [
      ['a', 200, 0.0004],
      ['a', 200, 0.001], // on a bound: counted in that bucket (le)
      ['a', 204, 0.0031],
      ['a', 503, 0.7],
      ['a', 404, 61], // past the last bound: only +Inf, sum and count
      ['b', 101, 0.02],
      ['b', 302, 12],
      ['b', 99, 0.2], // out-of-range statuses fall in the nearest class
      ['b', 600, 0.05],
    ];
    for (const [d, status, s] of answers) {
      (d === 'a' ? a : b).finished(status, s);
      ref.finished(d, status, s);
    }
    const lines = await answeredLines(ours.registry);
    expect(lines).toEqual(await answeredLines(ref.registry));
    expect(lines).toContain('flotilla_proxy_requests_total{deployment="a",code="2xx"} 3');
    expect(lines).toContain('flotilla_proxy_request_duration_seconds_count{deployment="a"} 5');

    // A second scrape after more answers: cumulative, not reset by the scrape.
    a.finished(200, 0.002);
    ref.finished('a', 200, 0.002);
    expect(await answeredLines(ours.registry)).toEqual(await answeredLines(ref.registry));
  });

  it('drop a forgotten deployment’s series; a handle used again starts from zero', async () => {
    const ours = createProxyMetrics(() => []);
    const ref = reference();
    const a = ours.forDeployment('a');
    a.finished(200, 0.01);
    ref.finished('a', 200, 0.01);
    ours.forget('a');
    ref.forget('a');
    expect(await answeredLines(ours.registry)).toEqual(await answeredLines(ref.registry));
    expect((await ours.registry.metrics()).includes('deployment="a"')).toBe(false);
    a.finished(500, 0.03);
    ref.finished('a', 500, 0.03);
    expect(await answeredLines(ours.registry)).toEqual(await answeredLines(ref.registry));
  });

  it('the histogram read as values (what load reports use) has per-bucket cumulative counts', async () => {
    const ours = createProxyMetrics(() => []);
    const a = ours.forDeployment('a');
    a.finished(200, 0.002);
    a.finished(200, 0.2);
    const metric = ours.registry.getSingleMetric('flotilla_proxy_request_duration_seconds')!;
    const { values } = await metric.get();
    const bucket = (le: number | string) =>
      values.find(
        (v) => (v as { metricName?: string }).metricName?.endsWith('_bucket') && v.labels.le === le,
      )?.value;
    expect(bucket(0.001)).toBe(0);
    expect(bucket(0.0025)).toBe(1);
    expect(bucket(0.25)).toBe(2);
    expect(bucket('+Inf')).toBe(2);
  });
});
