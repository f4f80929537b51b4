/**
 * One proxy worker process (forked by workers.ts through node:cluster): Flotilla's proxy with
 * its share of the admission limits, following the tables the primary sends, reporting its
 * in-flight requests and load, and its metrics when asked. Its logs are JSON lines on stdout,
 * like serve's.
 */
import process from 'node:process';
import { pino } from 'pino';
import type { Registry } from 'prom-client';
import type { RoutingTable } from '../domain/routing.ts';
import { startLoadCounters } from '../scaling/load-counters.ts';
import { createProxy } from './proxy-server.ts';
import { createStaticTableSource } from './routing-table-source.ts';
import type { FromWorker, ToWorker } from './workers.ts';

const REPORT_MS = 50;
const LOAD_REPORT_MS = 1_000;

async function main(): Promise<void> {
  const env = process.env;
  const index = Number(env.FLOTILLA_PROXY_WORKER_INDEX ?? 0);
  const count = Number(env.FLOTILLA_PROXY_WORKER_COUNT ?? 1);
  const logger = pino({ level: env.FLOTILLA_PROXY_WORKER_LOG_LEVEL ?? 'info' }).child({
    worker: index,
  });
  const send = (m: FromWorker) => {
    if (process.connected) process.send?.(m);
  };
  const source = createStaticTableSource();
  const seenRoutes = new Set<string>();
  const onTable = (t: RoutingTable) => {
    source.set(t);
    for (const d of t.deployments) for (const r of d.routes) seenRoutes.add(r.routeId);
  };
  let stop: (() => Promise<void>) | undefined;
  let closeAsked = false;
  // The proxy's registry once it runs; the primary sums every worker's (its /metrics).
  let metrics: Registry | null = null;
  let firstTable: (() => void) | undefined;
  const tableKnown = new Promise<void>((resolve) => {
    firstTable = resolve;
  });
  process.on('message', (m: ToWorker) => {
    if (m.type === 'table') {
      onTable(m.table);
      firstTable?.();
    } else if (m.type === 'metrics') {
      const id = m.id;
      void (metrics ? metrics.getMetricsAsJSON() : Promise.resolve([])).then(
        (json) => send({ type: 'metrics', id, metrics: json }),
        (err: unknown) => {
          logger.warn({ err }, 'reading metrics failed');
          send({ type: 'metrics', id, metrics: [] });
        },
      );
    } else if (m.type === 'close') {
      closeAsked = true;
      void stop?.();
    }
  });
  // Listening for messages: ask for the table, and serve only once it is known.
  send({ type: 'hello' });
  await tableKnown;
  // The primary going away (crash) leaves nobody to route for.
  process.on('disconnect', () => void stop?.());

  const proxy = await createProxy({
    source,
    host: env.FLOTILLA_PROXY_WORKER_HOST ?? '127.0.0.1',
    port: Number(env.FLOTILLA_PROXY_WORKER_PORT ?? 0),
    logger,
    timeouts: JSON.parse(env.FLOTILLA_PROXY_WORKER_TIMEOUTS ?? '{}'),
    workerShare: { index, count },
    activation: { request: (deploymentId) => send({ type: 'activate', deploymentId }) },
  });
  metrics = proxy.metrics;
  // Its autoscaling counters, as a proxy of its own (the primary hands them to the runtime).
  const counters = startLoadCounters({
    source: {
      deployments: () => source.current().deployments,
      status: (name) => proxy.status(name),
      metrics: proxy.metrics,
    },
    proxyId: `worker-${index}`,
  });
  const loadTimer = setInterval(() => {
    counters.report().then(
      (report) => send({ type: 'load', report }),
      (err: unknown) => logger.warn({ err }, 'load report failed'),
    );
  }, LOAD_REPORT_MS);
  let last = '';
  const report = setInterval(() => {
    const inflight: Array<[string, number]> = [];
    const current = new Set<string>();
    for (const d of source.current().deployments) for (const r of d.routes) current.add(r.routeId);
    for (const id of seenRoutes) {
      const n = proxy.inflight(id);
      if (n > 0) inflight.push([id, n]);
      else if (!current.has(id)) seenRoutes.delete(id);
    }
    const status = source
      .current()
      .deployments.map(
        (d) => [d.name, proxy.status(d.deploymentId)] as [string, ReturnType<typeof proxy.status>],
      );
    const lastRequests = [...proxy.lastRequests()];
    const held = source
      .current()
      .deployments.map((d) => [d.deploymentId, proxy.held(d.deploymentId)] as [string, number])
      .filter(([, n]) => n > 0);
    const text = JSON.stringify([inflight, status, lastRequests, held]);
    if (text === last) return;
    last = text;
    send({ type: 'report', inflight, status, last: lastRequests, held });
  }, REPORT_MS);
  const unsubEvents = proxy.onEvent((event) => send({ type: 'event', event }));
  stop = async () => {
    stop = undefined;
    clearInterval(report);
    clearInterval(loadTimer);
    counters.stop();
    unsubEvents();
    await proxy.close();
    await source.close();
    send({ type: 'closed' });
    process.exit(0);
  };
  send({ type: 'ready', port: proxy.port });
  if (closeAsked) void stop();
}

main().catch((err: unknown) => {
  pino().error({ err }, 'proxy worker failed to start');
  process.exit(1);
});
