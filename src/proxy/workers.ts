/**
 * `serve --proxy-workers N`: the data plane on N processes sharing one port (node:cluster;
 * the primary accepts and hands connections round-robin to the workers on Linux). The primary
 * (the process running the control plane) sends every routing table to every worker over IPC;
 * each worker runs Flotilla's proxy (proxy-worker.ts) with its part of each deployment's
 * admission limits (src/proxy/admission.ts `splitShare`: the parts sum to the deployment's
 * limit, so the limits hold across workers without any per-request coordination), and
 * reports its in-flight requests and load every 50 ms for drains, autoscaling and /health.
 *
 * The returned object is a FlotillaProxy like the in-process one; its `metrics` registry is
 * the workers' metrics summed at scrape time (each worker is asked over IPC for its registry's
 * JSON; prom-client's AggregatorRegistry combines them), so the primary's `/metrics` counts
 * every request once. `/metrics` on the proxy port is answered by whichever worker takes the
 * connection, with its own counters.
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { ConnectionTimeouts } from '../domain/connection-timeouts.ts';
import { hostForUrl } from '../domain/host.ts';
import type { RoutingTable } from '../domain/routing.ts';
import type { LoadReport } from '../scaling/load-report.ts';
import { type AdmissionLevel, LEVEL_VALUE } from './admission.ts';
import type { ProxyEvent, ProxyEventListener } from './proxy-events.ts';
import { aggregatedProxyRegistry, type MetricsJSON } from './proxy-metrics.ts';
import type {
  DeploymentLoadStatus,
  FlotillaProxy,
  ProxyHealthStats,
  ProxyOptions,
} from './proxy-server.ts';
import type { RoutingTableSource } from './routing-table-source.ts';

/**
 * Default worker count: the cores minus one for the rest of `serve` (API, runtime actors,
 * prober, and the primary's accept loop); at least 1. One worker means no workers: the proxy
 * runs in the serve process itself, as without the flag.
 */
export function defaultProxyWorkers(cores: number = availableParallelism()): number {
  return Math.max(1, cores - 1);
}

export interface ProxyWorkersOptions {
  source: RoutingTableSource;
  count: number;
  host?: string | undefined;
  port?: number | undefined;
  timeouts?: Partial<ConnectionTimeouts> | undefined;
  logger?: Logger | undefined;
  /** pino level for the workers' JSON logs (stdout). Default `info`. */
  logLevel?: string | undefined;
  /** Scale to zero: a worker holding a request asks the primary, which asks this. */
  activation?: ProxyOptions['activation'];
}

/** The workers as one data plane, plus each worker's autoscaling load report. */
export interface ProxyWorkers extends FlotillaProxy {
  /** The latest load report of every worker (each is a proxy to the autoscaler). */
  loadReports(): LoadReport[];
}

/** Primary → worker. */
export type ToWorker =
  | { type: 'table'; table: RoutingTable }
  /** Asks for the worker's metrics (its registry's JSON), answered with the same id. */
  | { type: 'metrics'; id: number }
  | { type: 'close' };
/** Worker → primary. */
export type FromWorker =
  | { type: 'hello' }
  | { type: 'ready'; port: number }
  | {
      type: 'report';
      inflight: Array<[string, number]>;
      status: Array<[string, DeploymentLoadStatus]>;
      /** Last request per deployment id (scale to zero's idle signal). */
      last: Array<[string, number]>;
      /** Requests held for an activation, by deployment id. */
      held: Array<[string, number]>;
    }
  | { type: 'load'; report: LoadReport }
  | { type: 'activate'; deploymentId: string }
  | { type: 'event'; event: ProxyEvent }
  | { type: 'metrics'; id: number; metrics: MetricsJSON }
  | { type: 'closed' };

const START_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 10_000;
/** A worker that does not answer a metrics request in this time counts as having none. */
const METRICS_TIMEOUT_MS = 2_000;

interface WorkerState {
  index: number;
  worker: Worker;
  inflight: Map<string, number>;
  status: Map<string, DeploymentLoadStatus>;
  last: Map<string, number>;
  held: Map<string, number>;
  load: LoadReport | null;
}

/** Starts `count` proxy workers on one port and keeps them on `source`'s table. */
export async function createProxyWorkers(opts: ProxyWorkersOptions): Promise<ProxyWorkers> {
  const count = Math.max(1, Math.floor(opts.count));
  const log = opts.logger?.child({ component: 'proxy-workers' });
  const host = opts.host ?? '127.0.0.1';
  const listeners = new Set<ProxyEventListener>();
  const states: WorkerState[] = [];
  let closing = false;
  // Every worker listens on the same address and port as given (0 too): node:cluster keys
  // the shared handle by them, so all get the one port the primary bound.
  const listenPort = opts.port ?? 0;
  let port = listenPort;

  // The worker entry next to this file, in the same form (.ts under tsx, .js when built);
  // workers inherit this process's execArgv, so a TypeScript loader carries over.
  const here = fileURLToPath(import.meta.url);
  cluster.setupPrimary({
    exec: fileURLToPath(new URL(`./proxy-worker${extname(here)}`, import.meta.url)),
    args: [],
    serialization: 'advanced',
  });

  const send = (w: Worker, m: ToWorker) => {
    if (w.isConnected()) w.send(m);
  };
  // Metrics requests waiting for a worker's answer, by request id.
  let metricsRequests = 0;
  const metricsAnswers = new Map<number, (m: MetricsJSON) => void>();
  const metricsOf = (st: WorkerState): Promise<MetricsJSON> => {
    if (!st.worker.isConnected()) return Promise.resolve([]);
    const id = ++metricsRequests;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        metricsAnswers.delete(id);
        log?.warn({ worker: st.index }, 'proxy worker did not answer a metrics request');
        resolve([]);
      }, METRICS_TIMEOUT_MS);
      metricsAnswers.set(id, (m) => {
        clearTimeout(timer);
        metricsAnswers.delete(id);
        resolve(m);
      });
      send(st.worker, { type: 'metrics', id });
    });
  };

  function fork(index: number): Promise<WorkerState> {
    const worker = cluster.fork({
      FLOTILLA_PROXY_WORKER_INDEX: String(index),
      FLOTILLA_PROXY_WORKER_COUNT: String(count),
      FLOTILLA_PROXY_WORKER_HOST: host,
      FLOTILLA_PROXY_WORKER_PORT: String(listenPort),
      FLOTILLA_PROXY_WORKER_TIMEOUTS: JSON.stringify(opts.timeouts ?? {}),
      FLOTILLA_PROXY_WORKER_LOG_LEVEL: opts.logLevel ?? 'info',
    });
    const st: WorkerState = {
      index,
      worker,
      inflight: new Map(),
      status: new Map(),
      last: new Map(),
      held: new Map(),
      load: null,
    };
    worker.on('message', (m: FromWorker) => {
      // The worker listens for messages now: its first table.
      if (m.type === 'hello') send(worker, { type: 'table', table: opts.source.current() });
      else if (m.type === 'report') {
        st.inflight = new Map(m.inflight);
        st.status = new Map(m.status);
        st.last = new Map(m.last);
        st.held = new Map(m.held);
      } else if (m.type === 'load') {
        st.load = m.report;
      } else if (m.type === 'metrics') {
        metricsAnswers.get(m.id)?.(m.metrics);
      } else if (m.type === 'activate') {
        try {
          void Promise.resolve(opts.activation?.request(m.deploymentId)).catch((err: unknown) =>
            log?.warn({ err, deployment: m.deploymentId }, 'activation failed'),
          );
        } catch (err) {
          log?.warn({ err, deployment: m.deploymentId }, 'activation failed');
        }
      } else if (m.type === 'event') {
        for (const l of listeners) {
          try {
            l(m.event);
          } catch (err) {
            log?.warn({ err }, 'proxy event listener failed');
          }
        }
      }
    });
    worker.on('exit', (code, signal) => {
      if (closing) return;
      // A worker died: its requests are gone; start another in its place.
      log?.error({ worker: index, code, signal }, 'proxy worker exited; starting a new one');
      const i = states.indexOf(st);
      fork(index).then(
        (next) => {
          if (i >= 0 && !closing) states[i] = next;
          else send(next.worker, { type: 'close' });
        },
        (err: unknown) => log?.error({ err, worker: index }, 'proxy worker restart failed'),
      );
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`proxy worker ${index} did not start`)),
        START_TIMEOUT_MS,
      );
      const onMessage = (m: FromWorker) => {
        if (m.type !== 'ready') return;
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        port = m.port;
        resolve(st);
      };
      const onExit = (code: number) => {
        clearTimeout(timer);
        reject(new Error(`proxy worker ${index} exited (${code}) before listening`));
      };
      worker.on('message', onMessage);
      worker.once('exit', onExit);
    });
  }

  try {
    states.push(...(await Promise.all(Array.from({ length: count }, (_, i) => fork(i)))));
  } catch (err) {
    closing = true;
    for (const s of states) s.worker.process.kill('SIGKILL');
    throw err;
  }
  const unsubscribe = opts.source.subscribe((table) => {
    for (const s of states) send(s.worker, { type: 'table', table });
  });
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : hostForUrl(host);
  log?.info({ port, host, workers: count }, 'proxy workers listening');

  function status(deployment: string): DeploymentLoadStatus {
    let level: AdmissionLevel = 'healthy';
    let inflight = 0;
    let queued = 0;
    let capacity = 0;
    for (const s of states) {
      const st = s.status.get(deployment);
      if (!st) continue;
      inflight += st.inflight;
      queued += st.queued;
      capacity += st.capacity;
      if (LEVEL_VALUE[st.level] > LEVEL_VALUE[level]) level = st.level;
    }
    return { level, inflight, queued, capacity };
  }

  function stats(): ProxyHealthStats {
    const names = new Set<string>();
    for (const s of states) for (const n of s.status.keys()) names.add(n);
    let level: AdmissionLevel = 'healthy';
    let inflight = 0;
    let queued = 0;
    let capacity = 0;
    const busy: Array<DeploymentLoadStatus & { deployment: string }> = [];
    for (const n of names) {
      const st = status(n);
      inflight += st.inflight;
      queued += st.queued;
      capacity += st.capacity;
      if (LEVEL_VALUE[st.level] > LEVEL_VALUE[level]) level = st.level;
      if (st.inflight > 0 || st.queued > 0) busy.push({ deployment: n, ...st });
    }
    busy.sort((a, b) => b.inflight + b.queued - (a.inflight + a.queued));
    return { level, inflight, queued, capacity, busiest: busy.slice(0, 20), serving: !closing };
  }

  let closed: Promise<void> | undefined;
  return {
    port,
    url: `http://${urlHost}:${port}`,
    close() {
      closed ??= (async () => {
        closing = true;
        unsubscribe();
        await Promise.all(
          states.map(
            (s) =>
              new Promise<void>((resolve) => {
                if (s.worker.isDead()) {
                  resolve();
                  return;
                }
                const timer = setTimeout(() => {
                  s.worker.process.kill('SIGKILL');
                }, CLOSE_TIMEOUT_MS);
                s.worker.once('exit', () => {
                  clearTimeout(timer);
                  resolve();
                });
                send(s.worker, { type: 'close' });
              }),
          ),
        );
        listeners.clear();
      })();
      return closed;
    },
    inflight(routeId) {
      let n = 0;
      for (const s of states) n += s.inflight.get(routeId) ?? 0;
      return n;
    },
    status,
    stats,
    lastRequests() {
      const out = new Map<string, number>();
      for (const s of states) {
        for (const [id, at] of s.last) if (at > (out.get(id) ?? 0)) out.set(id, at);
      }
      return out;
    },
    held(deploymentId) {
      let n = 0;
      for (const s of states) n += s.held.get(deploymentId) ?? 0;
      return n;
    },
    loadReports() {
      return states.flatMap((s) => (s.load ? [s.load] : []));
    },
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    metrics: aggregatedProxyRegistry(() => Promise.all(states.map(metricsOf))),
  };
}
