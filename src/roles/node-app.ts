/**
 * The small HTTP face of a single-role process (proxy or prober): `/health`, `/ready` and
 * `/metrics`, which every Flotilla process answers.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Registry } from 'prom-client';

export function buildNodeApp(opts: {
  role: string;
  ready: () => Promise<{ ready: boolean; missing: string[] }>;
  registries: Registry[];
  /** Liveness with detail; 500 when `ok` is false. Default: always ok. */
  health?: (() => { ok: boolean } & Record<string, unknown>) | undefined;
}): FastifyInstance {
  const own = new Registry();
  collectDefaultMetrics({ register: own, prefix: 'flotilla_' });
  // prom-client names these gauges `_total`, which promtool rejects (see src/api/metrics.ts).
  for (const kind of ['handles', 'requests', 'resources']) {
    own.removeSingleMetric(`flotilla_nodejs_active_${kind}_total`);
  }
  const merged = Registry.merge([own, ...opts.registries]);
  const app = Fastify({ logger: false });
  app.get('/health', async (_req, reply) => {
    if (!opts.health) return { status: 'ok', role: opts.role };
    const { ok, ...report } = opts.health();
    return reply.code(ok ? 200 : 500).send(report);
  });
  app.get('/ready', async (_req, reply) => {
    const r = await opts.ready();
    return reply.code(r.ready ? 200 : 503).send({ ...r, role: opts.role });
  });
  app.get('/metrics', async (_req, reply) =>
    reply.header('content-type', merged.contentType).send(await merged.metrics()),
  );
  return app;
}
