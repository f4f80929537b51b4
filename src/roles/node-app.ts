/**
 * The small HTTP face of a single-role process (proxy or prober): `/health`, `/ready` and
 * `/metrics`, which every Flotilla process answers. Its errors (a 503 `/ready` included) have
 * the API's shape, `{"error": {"code", "message", "details"}}`.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createErrorHandler } from '../api/error-handler.ts';
import { type ConnectionTimeouts, fastifyTimeouts } from '../domain/connection-timeouts.ts';
import { errorBody, notReady, routeNotFound } from '../domain/errors.ts';

export function buildNodeApp(opts: {
  role: string;
  ready: () => Promise<{ ready: boolean; missing: string[] }>;
  registries: Registry[];
  /** Liveness with detail; 500 when `ok` is false. Default: always ok. */
  health?: (() => { ok: boolean } & Record<string, unknown>) | undefined;
  /** Limits on client connections; defaults in API_CONNECTION_TIMEOUTS. */
  timeouts?: Partial<ConnectionTimeouts> | undefined;
}): FastifyInstance {
  const own = new Registry();
  collectDefaultMetrics({ register: own, prefix: 'flotilla_' });
  // prom-client names these gauges `_total`, which promtool rejects (see src/api/metrics.ts).
  for (const kind of ['handles', 'requests', 'resources']) {
    own.removeSingleMetric(`flotilla_nodejs_active_${kind}_total`);
  }
  const merged = Registry.merge([own, ...opts.registries]);
  const handleError = createErrorHandler(1024 * 1024);
  const app = Fastify({
    logger: false,
    frameworkErrors: (err, req, reply) => handleError(err, req, reply),
    ...fastifyTimeouts(opts.timeouts),
  });
  app.setErrorHandler(handleError);
  app.setNotFoundHandler((req, reply) => {
    const err = routeNotFound(req.method, req.url.split('?')[0] ?? '/');
    return reply.status(err.status).send(errorBody(err));
  });
  app.get('/health', async (_req, reply) => {
    if (!opts.health) return { status: 'ok', role: opts.role };
    const { ok, ...report } = opts.health();
    return reply.code(ok ? 200 : 500).send(report);
  });
  app.get('/ready', async (_req, reply) => {
    const r = await opts.ready();
    if (r.ready) return { ...r, role: opts.role };
    return reply
      .code(503)
      .header('retry-after', '1')
      .send({ ...r, role: opts.role, ...errorBody(notReady(r.missing)) });
  });
  app.get('/metrics', async (_req, reply) =>
    reply.header('content-type', merged.contentType).send(await merged.metrics()),
  );
  return app;
}
