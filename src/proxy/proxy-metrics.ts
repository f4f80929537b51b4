/**
 * The proxy's Prometheus metrics, all prefixed `flotilla_proxy_`, in a registry of its own
 * (the composition root merges it into the process's /metrics). Gauges are read from the live
 * admission state at scrape time. What every request updates (answers by status class and the
 * latency histogram) is counted in plain numbers per deployment and handed to prom-client at
 * scrape time: a prom-client label child still builds a label hash and validates the labels on
 * each call, which the request path does not pay for. With proxy workers, the primary's
 * registry sums the workers' ({@link aggregatedProxyRegistry}); each metric says how its values
 * combine (a sum unless declared otherwise).
 */
import {
  type Aggregator,
  AggregatorRegistry,
  Counter,
  Gauge,
  Histogram,
  type MetricObjectWithValues,
  type MetricValue,
  type PrometheusContentType,
  Registry,
} from 'prom-client';
import { metricsIn } from '../metrics/registry-helpers.ts';
import { type AdmissionLevel, LEVEL_VALUE } from './admission.ts';

/** What a scrape reads of one deployment. */
export interface DeploymentGaugeSample {
  deployment: string;
  inflight: number;
  queued: number;
  capacity: number;
  load: number;
  level: AdmissionLevel;
}

/** Per-deployment handles used on the request path. */
export interface DeploymentMetrics {
  /** Counts a finished request by status class and observes its duration. */
  finished(status: number, seconds: number): void;
  rejected(
    reason: 'overloaded' | 'queue_full' | 'no_healthy_replicas' | 'activation_timeout',
  ): void;
  timedOut(kind: 'queue' | 'upstream'): void;
  retried(): void;
  ejected(): void;
}

/** The proxy's metrics: the registry, and handles per deployment for the request path. */
export interface ProxyMetrics {
  registry: Registry;
  forDeployment(name: string): DeploymentMetrics;
  /** Drops a deployment's series (it left the table). */
  forget(name: string): void;
  setTableVersion(v: number): void;
}

/** Creates the metrics in a new registry; `sample` feeds the gauges at scrape time. */
export function createProxyMetrics(sample: () => DeploymentGaugeSample[]): ProxyMetrics {
  const registry = new Registry();
  const m = metricsIn(registry);
  /** Answers per live deployment name, counted on the request path, read at scrape time. */
  const answered = new Map<string, AnswerCounts>();
  const requests = new Counter<'deployment' | 'code'>({
    name: 'flotilla_proxy_requests_total',
    help: 'Requests answered by the proxy, by deployment and status class',
    labelNames: ['deployment', 'code'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [deployment, c] of answered) {
        for (let i = 0; i < CLASSES.length; i++) {
          const n = c.byClass[i]!;
          if (n > 0) this.inc({ deployment, code: CLASSES[i]! }, n);
        }
      }
    },
  });
  registry.registerMetric(
    new CountedHistogram(
      'flotilla_proxy_request_duration_seconds',
      'Time from arrival at the proxy to the end of the response',
      answered,
    ),
  );
  const rejections = m.counter(
    'flotilla_proxy_rejections_total',
    'Requests refused before reaching a replica, by reason',
    ['deployment', 'reason'],
  );
  const timeouts = m.counter(
    'flotilla_proxy_timeouts_total',
    'Requests that timed out in the queue or waiting for a replica',
    ['deployment', 'kind'],
  );
  const retries = m.counter('flotilla_proxy_retries_total', 'Attempts retried on another replica', [
    'deployment',
  ]);
  const ejections = m.counter(
    'flotilla_proxy_outlier_ejections_total',
    'Replicas taken out of rotation by passive outlier detection',
    ['deployment'],
  );
  const tableVersion = new Gauge({
    name: 'flotilla_proxy_routing_table_version',
    help: 'Version of the routing table the proxy routes by',
    registers: [registry],
    // Over workers: the oldest table any of them routes by.
    aggregator: 'min',
  });
  const gauge = (
    name: string,
    help: string,
    pick: (s: DeploymentGaugeSample) => number,
    aggregator: Aggregator = 'sum',
  ) =>
    m.sampledGauge(
      name,
      help,
      'deployment',
      () => sample().map((s) => [s.deployment, pick(s)] as const),
      aggregator,
    );
  gauge('flotilla_proxy_inflight', 'Requests in flight to replicas', (s) => s.inflight);
  gauge('flotilla_proxy_queue_depth', 'Requests waiting in the admission queue', (s) => s.queued);
  gauge(
    'flotilla_proxy_capacity',
    'Concurrent request slots (per replica × servable)',
    (s) => s.capacity,
  );
  // A share and a level do not add up over workers: the busiest one's.
  gauge(
    'flotilla_proxy_load',
    'Share of admission room taken (1 = all refused)',
    (s) => s.load,
    'max',
  );
  gauge(
    'flotilla_proxy_level',
    'Load level: 0 healthy, 1 stressed, 2 degraded, 3 critical',
    (s) => LEVEL_VALUE[s.level],
    'max',
  );

  /** This name's counts, created on first use (and again after `forget`). */
  const countsOf = (deployment: string): AnswerCounts => {
    let c = answered.get(deployment);
    if (!c) {
      c = new AnswerCounts();
      answered.set(deployment, c);
    }
    return c;
  };
  return {
    registry,
    forDeployment(deployment) {
      let counts = countsOf(deployment);
      return {
        finished(status, seconds) {
          if (counts.forgotten) counts = countsOf(deployment);
          counts.add(status, seconds);
        },
        rejected: (reason) => rejections.labels({ deployment, reason }).inc(),
        timedOut: (kind) => timeouts.labels({ deployment, kind }).inc(),
        retried: () => retries.labels({ deployment }).inc(),
        ejected: () => ejections.labels({ deployment }).inc(),
      };
    },
    forget(deployment) {
      const c = answered.get(deployment);
      if (c) c.forgotten = true;
      answered.delete(deployment);
      for (const code of CLASSES) requests.remove({ deployment, code });
      for (const reason of ['overloaded', 'queue_full', 'no_healthy_replicas']) {
        rejections.remove({ deployment, reason });
      }
      for (const kind of ['queue', 'upstream']) timeouts.remove({ deployment, kind });
      retries.remove({ deployment });
      ejections.remove({ deployment });
    },
    setTableVersion(v) {
      tableVersion.set(v);
    },
  };
}

const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
const DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** One deployment's answers: per status class, and the duration histogram (non-cumulative). */
export class AnswerCounts {
  readonly byClass = new Float64Array(CLASSES.length);
  /** Per bucket of DURATION_BUCKETS, plus one past the last (+Inf); not cumulative. */
  readonly buckets = new Float64Array(DURATION_BUCKETS.length + 1);
  sum = 0;
  count = 0;
  /** Dropped by `forget`: a handle still holding it fetches fresh counts. */
  forgotten = false;

  add(status: number, seconds: number): void {
    const cls = Math.floor(status / 100) - 1;
    this.byClass[Math.max(0, Math.min(4, cls))]! += 1;
    let i = 0;
    // Most answers are fast: a linear scan from the smallest bucket ends early.
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
    this.buckets[i]! += 1;
    this.sum += seconds;
    this.count++;
  }
}

/** One value of a histogram as prom-client's exposition reads it (`le` first, then the deployment). */
interface ExportedValue {
  labels: { le?: number | string };
  sharedLabels: { deployment: string };
  value: number;
  metricName: string;
  exemplar: undefined;
}

/**
 * The request duration histogram, rendered at scrape time from the per-deployment counts the
 * request path keeps (AnswerCounts): the values prom-client's own Histogram would give for the
 * same observations (one series per deployment with answers; cumulative `_bucket`s, `+Inf`,
 * `_sum`, `_count`), so the text, the JSON and the workers' aggregation are unchanged
 * (test/unit/proxy/proxy-metrics.test.ts pins them). It reads nothing of prom-client's
 * internals; its own series map stays empty.
 */
class CountedHistogram extends Histogram<'deployment'> {
  constructor(
    private readonly metric: string,
    private readonly description: string,
    private readonly answered: Map<string, AnswerCounts>,
  ) {
    super({
      name: metric,
      help: description,
      buckets: DURATION_BUCKETS,
      labelNames: ['deployment'],
      registers: [],
    });
  }

  private values(): ExportedValue[] {
    const bucket = `${this.metric}_bucket`;
    const out: ExportedValue[] = [];
    for (const [deployment, c] of this.answered) {
      if (c.count === 0) continue;
      // One labels object per series: prom-client caches its rendering per object.
      const shared = { deployment };
      let acc = 0;
      for (let i = 0; i < DURATION_BUCKETS.length; i++) {
        acc += c.buckets[i]!;
        out.push(value({ le: DURATION_BUCKETS[i]! }, shared, acc, bucket));
      }
      out.push(
        value({ le: '+Inf' }, shared, c.count, bucket),
        value({}, shared, c.sum, `${this.metric}_sum`),
        value({}, shared, c.count, `${this.metric}_count`),
      );
    }
    return out;
  }

  /** What the text exposition reads (Registry.metrics() prefers it to get()). */
  async getForPromString() {
    return {
      name: this.metric,
      help: this.description,
      type: 'histogram',
      values: this.values(),
      aggregator: 'sum',
    };
  }

  /** What getMetricsAsJSON reads (and so the workers' aggregation): labels merged per value. */
  override async get(): Promise<HistogramData> {
    const data = {
      name: this.metric,
      help: this.description,
      type: 'histogram',
      values: this.values().map((v) => ({
        labels: { ...v.labels, deployment: v.sharedLabels.deployment },
        value: v.value,
        metricName: v.metricName,
      })),
      aggregator: 'sum',
    };
    // prom-client's declarations type `type` as a numeric enum; at run time it is this string.
    return data as unknown as HistogramData;
  }
}

type HistogramData = Awaited<ReturnType<Histogram<'deployment'>['get']>>;

function value(
  labels: { le?: number | string },
  sharedLabels: { deployment: string },
  n: number,
  metricName: string,
): ExportedValue {
  return { labels, sharedLabels, value: n, metricName, exemplar: undefined };
}

/** The workers' metrics, as `registry.getMetricsAsJSON()` gives them. */
export type MetricsJSON = Array<MetricObjectWithValues<MetricValue<string>>>;

/** A metric of the aggregated registry: its values are read from the workers at scrape time. */
class WorkersMetric extends Gauge {
  constructor(
    name: string,
    help: string,
    private readonly read: () => Promise<MetricObjectWithValues<MetricValue<string>>>,
  ) {
    super({ name, help, registers: [] });
  }

  override get(): Promise<MetricObjectWithValues<MetricValue<string>>> {
    return this.read();
  }
}

/**
 * One proxy's metrics summed over its worker processes (src/proxy/workers.ts): the same
 * metrics as a single proxy's registry, each read at scrape time from `collect()` (every
 * worker's `getMetricsAsJSON()`), combined by prom-client's `AggregatorRegistry.aggregate` as
 * each metric declares (counters, histograms, in flight, queue and capacity add up). One
 * scrape collects once, however many metrics it reads. The registry can be merged like any.
 */
export function aggregatedProxyRegistry(collect: () => Promise<MetricsJSON[]>): Registry {
  // The metric names, help and empty values, from a proxy registry with nothing in it.
  const template = createProxyMetrics(() => []).registry;
  let snapshot: Promise<Registry> | null = null;
  const clear = () => {
    snapshot = null;
  };
  const current = (): Promise<Registry> => {
    if (snapshot) return snapshot;
    const p = collect().then((perWorker) =>
      AggregatorRegistry.aggregate<PrometheusContentType>(perWorker),
    );
    snapshot = p;
    // The next scrape collects again (this one's reads were all asked for synchronously).
    void p.then(clear, clear);
    return p;
  };
  const out = new Registry();
  for (const { name, help } of template.getMetricsAsArray()) {
    const empty = template.getSingleMetric(name);
    if (!empty) continue;
    out.registerMetric(
      new WorkersMetric(name, help, async () =>
        ((await current()).getSingleMetric(name) ?? empty).get(),
      ),
    );
  }
  return out;
}
