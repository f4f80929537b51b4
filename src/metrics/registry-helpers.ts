/**
 * Declaring Prometheus metrics in one registry, shared by the process's metrics
 * (src/api/metrics.ts) and the proxy's (src/proxy/proxy-metrics.ts): counters, histograms,
 * and gauges sampled at scrape time (one series per label value, reset on each scrape so a
 * series whose subject is gone disappears).
 */
import { type Aggregator, Counter, Gauge, Histogram, type Registry } from 'prom-client';

export function metricsIn(registry: Registry) {
  const registers = [registry];
  return {
    counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []) {
      return new Counter<L>({ name, help, labelNames, registers });
    },
    histogram<L extends string = never>(
      name: string,
      help: string,
      buckets: number[],
      labelNames: readonly L[] = [],
    ) {
      return new Histogram<L>({ name, help, buckets, labelNames, registers });
    },
    /**
     * A gauge read at scrape time: `sample()` gives each `label` value and its number.
     * `aggregator`: how processes' values combine (prom-client's AggregatorRegistry; sum).
     */
    sampledGauge<L extends string>(
      name: string,
      help: string,
      label: L,
      sample: () => Iterable<readonly [string, number]>,
      aggregator: Aggregator = 'sum',
    ) {
      return new Gauge<L>({
        name,
        help,
        labelNames: [label],
        registers,
        aggregator,
        collect() {
          this.reset();
          for (const [value, n] of sample()) this.set({ [label]: value } as Record<L, string>, n);
        },
      });
    },
  };
}
