/**
 * The process's Prometheus metrics, all prefixed `flotilla_`.
 *
 * Counters are incremented where things happen (the HTTP handlers, the snapshot writer's
 * flush hook, the prober's check results, actor transitions through `flotilla.subscribe`);
 * gauges are read from the runtime at scrape time, so nothing on the hot path walks the actor
 * tree. Create the registry before `createFlotilla` (its hooks go into the options), then
 * `attach` the Flotilla once it exists.
 */
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { LIVE_DEPLOYMENT_STATES } from '../../machines/deployment.ts';
import { LIVE_REPLICA_STATES } from '../../machines/replica.ts';
import type { HealthRecord } from '../domain/health.ts';
import { RouteStates } from '../domain/routing.ts';
import type { ChangeEvent, Flotilla } from '../index.ts';
import { metricsIn } from '../metrics/registry-helpers.ts';

// Live states (a terminated actor is gone from the gauges), read from the machines.
const DEPLOYMENT_STATES = LIVE_DEPLOYMENT_STATES;
const REPLICA_STATES = LIVE_REPLICA_STATES;
/** Live route states (a TERMINATED route is gone from the gauges). */
const ROUTE_STATES = RouteStates.filter((s) => s !== 'TERMINATED');

export type HealthCheckResult = 'passed' | 'failed' | 'error';

export interface MetricsRegistry {
  /** This process's own metrics (merge the proxy's with `text()`). */
  readonly registry: Registry;
  /** Pass to `createFlotilla({ observeFlush })`. */
  observeFlush(ms: number, writes: number): void;
  /** Pass to `createFlotilla({ onHealthCheck })`. */
  healthCheck(record: HealthRecord): void;
  deploymentCreated(): void;
  deploymentUpdated(): void;
  deploymentDeleted(): void;
  /** A change of a deployment's target replica count; `source` is `api` or `autoscaler`. */
  scalingEvent(direction: 'up' | 'down', source: 'api' | 'autoscaler'): void;
  /** Reads gauges from this Flotilla and counts its transitions; returns detach. */
  attach(flotilla: Flotilla): () => void;
  /** Prometheus text of this registry and the in-process proxy's. */
  text(): Promise<string>;
  readonly contentType: string;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): MetricsRegistry {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) {
    collectDefaultMetrics({ register: registry, prefix: 'flotilla_' });
    // prom-client names these gauges `_total`, which `promtool check metrics` rejects; the
    // same numbers remain, by type, in flotilla_nodejs_active_{handles,requests,resources}.
    for (const kind of ['handles', 'requests', 'resources']) {
      registry.removeSingleMetric(`flotilla_nodejs_active_${kind}_total`);
    }
  }
  let flotilla: Flotilla | null = null;
  const m = metricsIn(registry);

  const deployments = (verb: string) =>
    m.counter(
      `flotilla_deployments_${verb}_total`,
      `Deployments ${verb} through this process's API`,
    );
  const created = deployments('created');
  const updated = deployments('updated');
  const deleted = deployments('deleted');
  const scaling = m.counter(
    'flotilla_scaling_events_total',
    'Changes of a deployment target replica count, by direction and source',
    ['direction', 'source'],
  );
  const checks = m.counter(
    'flotilla_health_checks_total',
    'Readiness checks run by this process, by result (error: no HTTP answer)',
    ['result'],
  );
  const checkChildren = {
    passed: checks.labels({ result: 'passed' }),
    failed: checks.labels({ result: 'failed' }),
    error: checks.labels({ result: 'error' }),
  };
  const transitions = m.counter(
    'flotilla_actor_transitions_total',
    'Actor state transitions, by actor kind and the state entered',
    ['kind', 'to'],
  );
  const flushSeconds = m.histogram(
    'flotilla_snapshot_write_seconds',
    'Time to persist one batch of actor snapshots and history rows',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  );
  const flushWrites = m.counter(
    'flotilla_snapshot_writes_total',
    'Actor writes persisted (a batch holds one or more)',
  );

  // Gauges read the runtime at scrape time: one walk of the live actors per scrape.
  let scrape: { at: number; states: Map<string, string> } | null = null;
  const actorStates = () => {
    const now = Date.now();
    if (!flotilla) return new Map<string, string>();
    if (!scrape || now - scrape.at > 100)
      scrape = { at: now, states: flotilla.runtime.actorStates() };
    return scrape.states;
  };
  const byState = (kind: string, states: readonly string[]) => {
    const counts = new Map<string, number>(states.map((s) => [s, 0]));
    const prefix = `${kind}:`;
    for (const [id, state] of actorStates()) {
      if (id.startsWith(prefix)) counts.set(state, (counts.get(state) ?? 0) + 1);
    }
    return counts;
  };
  const stateGauge = (kind: string, plural: string, states: readonly string[]) =>
    m.sampledGauge(`flotilla_${plural}`, `Live ${plural} by state`, 'state', () =>
      byState(kind, states),
    );
  stateGauge('deployment', 'deployments', DEPLOYMENT_STATES);
  stateGauge('replica', 'replicas', REPLICA_STATES);
  stateGauge('route', 'routes', ROUTE_STATES);
  new Gauge({
    name: 'flotilla_actors',
    help: 'Live actors (deployments, replicas, routes) in this coordinator',
    registers: [registry],
    collect() {
      this.set(flotilla?.runtime.actorCount() ?? 0);
    },
  });
  new Counter({
    name: 'flotilla_snapshot_conflicts_total',
    help: 'Snapshot writes refused because another coordinator wrote the actor first',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(flotilla?.runtime.writer.stats.conflicts ?? 0);
    },
  });

  let merged: Registry | null = null;
  return {
    registry,
    contentType: registry.contentType,
    observeFlush(ms, writes) {
      flushSeconds.observe(ms / 1000);
      flushWrites.inc(writes);
    },
    healthCheck(record) {
      const result: HealthCheckResult =
        record.status === null ? 'error' : record.ready ? 'passed' : 'failed';
      checkChildren[result].inc();
    },
    deploymentCreated: () => created.inc(),
    deploymentUpdated: () => updated.inc(),
    deploymentDeleted: () => deleted.inc(),
    scalingEvent: (direction, source) => scaling.inc({ direction, source }),
    attach(f) {
      flotilla = f;
      merged = f.proxy ? Registry.merge([registry, f.proxy.metrics]) : registry;
      const unsub = f.subscribe((e: ChangeEvent) => transitions.inc({ kind: e.kind, to: e.to }));
      const unsubScaling = f.runtime.onScaling((e) =>
        scaling.inc({ direction: e.to > e.from ? 'up' : 'down', source: 'autoscaler' }),
      );
      return () => {
        unsub();
        unsubScaling();
        flotilla = null;
        merged = null;
      };
    },
    text: () => (merged ?? registry).metrics(),
  };
}
