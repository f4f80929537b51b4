/** What a Runtime is built from (the composition root supplies each adapter). */
import type { ReplicaBackend } from '../backends/backend.ts';
import type { HealthStore } from '../health/health-store.ts';
import type { LoadReport } from '../scaling/load-report.ts';
import type { Store } from '../store/store.ts';
import type { RuntimeConfig } from './config.ts';
import type { Clock } from './system-clock.ts';

export interface RuntimeLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface RuntimeDeps {
  store: Store;
  backend: ReplicaBackend;
  /** Where probers write; null when nothing probes (then routes stay PROVISIONING). */
  health: HealthStore | null;
  logger?: RuntimeLogger;
  config?: Partial<RuntimeConfig>;
  /** In-flight requests per route, from the proxy; drains wait for 0. */
  inflight?: (routeId: string) => number;
  /**
   * Resolves once proxies in other processes hold no request to the route (or `signal`
   * aborts); drains wait for it as well as for `inflight` (src/runtime/cluster-proxies.ts).
   */
  remoteDrained?: (routeId: string, signal: AbortSignal) => Promise<void>;
  /** Observes each snapshot flush (duration ms, writes), e.g. for a latency histogram. */
  observeFlush?: (ms: number, writes: number) => void;
  /**
   * The latest load report (src/scaling/load-report.ts) of every proxy serving this runtime's
   * deployments: the in-process proxy's read directly, other processes' read from Redis
   * (src/runtime/cluster-proxies.ts). The autoscaler's `requests`, `latency`, `inflight` and
   * `concurrency` come from these; without it those metrics are missing (status says so).
   */
  loadReports?: () => Promise<LoadReport[]>;
  /** Requests in flight per route over every proxy: a scale-in removes the least busy. */
  routeInflight?: () => Promise<Map<string, number>>;
  /**
   * Per-replica utilization % of what each replica requested (its resource_slots; one core when
   * it requested no cpu, no memory value when it requested no memory) for the autoscaler's
   * `cpu` and `memory`; null when nothing was sampled. Supplied by the backend's sampler
   * (src/scaling/resource-metrics.ts); without it those metrics are missing (status says so).
   */
  resourceMetrics?: {
    read(
      deploymentId: string,
      replicaIds: readonly string[],
      metric: 'cpu' | 'memory',
    ): Map<string, number> | null;
  };
  /**
   * The last request per deployment id over every proxy, epoch ms (scale to zero's idle
   * signal). Without it no deployment scales to zero.
   */
  lastRequests?: () => Promise<ReadonlyMap<string, number>>;
  /**
   * The one clock of the runtime: what it timestamps and compares, the machines' deadlines and
   * the snapshot writer's timers. Default the system clock; tests pass a manual one.
   */
  clock?: Clock;
}
