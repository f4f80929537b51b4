/**
 * The inspector's routes, registered by buildApp in one line:
 *   - `GET /v1/events/stream` (src/api/events-stream.ts), the live feed;
 *   - `GET /v1/deployments/{id}/state?at=<RFC 3339>`, every actor's state at a past instant,
 *     rebuilt from the recorded history;
 *   - `GET /inspector`, `/inspector/deployments/{id or name}` (one page, no data in it) and its
 *     assets under `/inspector/assets/`: hand-written JS/CSS in src/inspector/assets, elkjs's
 *     bundle from node_modules, and the statecharts exported from the machine definitions.
 * The page carries no data: everything it shows comes from /v1 with the bearer token.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { FlotillaError } from '../domain/errors.ts';
import type { DeploymentView, Flotilla } from '../index.ts';
import { INSPECTOR_ASSETS_DIR } from '../inspector/assets-dir.ts';
import { readHistory, statesAt } from '../inspector/history.ts';
import { MACHINE_NAMES, statechart } from '../inspector/statechart.ts';
import { type EventStreamOptions, registerEventStream } from './events-stream.ts';

export interface InspectorRoutesOptions {
  flotilla: Flotilla;
  stream?: Omit<EventStreamOptions, 'flotilla'>;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** Parses `at`; a missing one means now. */
export function parseAt(at: unknown): number {
  if (at === undefined || at === '') return Date.now();
  const t = typeof at === 'string' && RFC3339.test(at) ? Date.parse(at) : Number.NaN;
  if (Number.isNaN(t)) {
    throw new FlotillaError('validation', 'at: expected an RFC 3339 time', {
      details: [
        { path: 'at', message: `expected e.g. 2026-01-31T12:00:00Z, got ${JSON.stringify(at)}` },
      ],
    });
  }
  return t;
}

const ASSETS: Record<string, { file: () => string; type: string }> = {
  'app.js': {
    file: () => join(INSPECTOR_ASSETS_DIR, 'app.js'),
    type: 'text/javascript; charset=utf-8',
  },
  'app.css': {
    file: () => join(INSPECTOR_ASSETS_DIR, 'app.css'),
    type: 'text/css; charset=utf-8',
  },
  'elk.bundled.js': {
    file: () => createRequire(import.meta.url).resolve('elkjs/lib/elk.bundled.js'),
    type: 'text/javascript; charset=utf-8',
  },
};

/** What the fleet view shows of a deployment (the full views of 1,000 are ≈2.5 MB). */
export interface FleetEntry {
  id: string;
  name: string;
  state: string;
  reason: string | null;
  healthy_replicas: number;
  target_replicas: number;
  created_at: string;
  /** Route states, and the reasons of replicas that have one (trouble detection). */
  route_states: string[];
  replica_reasons: string[];
}

export function fleetEntry(v: DeploymentView): FleetEntry {
  return {
    id: v.id,
    name: v.name,
    state: v.state,
    reason: v.reason,
    healthy_replicas: v.healthy_replicas,
    target_replicas: v.target_replicas,
    created_at: v.created_at,
    route_states: v.routes.map((r) => r.state),
    replica_reasons: v.replicas.flatMap((r) => (r.reason ? [r.reason] : [])),
  };
}

export async function inspectorRoutes(
  app: FastifyInstance,
  opts: InspectorRoutesOptions,
): Promise<void> {
  const { flotilla } = opts;
  registerEventStream(app, { flotilla, ...(opts.stream ?? {}) });

  app.get('/v1/inspector/fleet', { schema: { hide: true } }, async (req) => {
    const q = req.query as { id?: string };
    const views = q.id ? [await flotilla.get(q.id)] : await flotilla.list();
    return { items: views.map(fleetEntry) };
  });

  app.get('/v1/deployments/:id/state', { schema: { hide: true } }, async (req) => {
    const { id } = req.params as { id: string };
    const at = parseAt((req.query as { at?: string }).at);
    const d = await flotilla.get(id);
    const rows = await readHistory(flotilla.store, d.id);
    const routes = await flotilla.store.listRoutes(d.id);
    const prefixed = (kind: string, id: string) =>
      id.startsWith(`${kind}:`) ? id : `${kind}:${id}`;
    const replicaOfRoute = new Map(
      routes.map((r) => [prefixed('route', r.id), prefixed('replica', r.replica_id)]),
    );
    const actors = statesAt(rows, at).map((a) => ({
      ...a,
      parent:
        a.kind === 'deployment'
          ? null
          : a.kind === 'replica'
            ? `deployment:${d.id}`
            : (replicaOfRoute.get(a.actor_id) ?? `deployment:${d.id}`),
    }));
    const last = rows.filter((r) => Date.parse(r.at) <= at).pop();
    return {
      deployment_id: d.id,
      name: d.name,
      at: new Date(at).toISOString(),
      state: actors.find((a) => a.kind === 'deployment')?.state ?? null,
      actors,
      last_event_id: last?.id ?? null,
    };
  });

  // ------------------------------------------------------------ the page
  const page = async (_req: unknown, reply: import('fastify').FastifyReply) => {
    const html = await readFile(join(INSPECTOR_ASSETS_DIR, 'index.html'), 'utf8');
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('referrer-policy', 'no-referrer')
      .header(
        'content-security-policy',
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:",
      )
      .send(html);
  };
  app.get('/inspector', { schema: { hide: true } }, page);
  app.get('/inspector/', { schema: { hide: true } }, page);
  app.get('/inspector/deployments/:id', { schema: { hide: true } }, page);
  const charts = JSON.stringify(Object.fromEntries(MACHINE_NAMES.map((n) => [n, statechart(n)])));
  app.get('/inspector/assets/machines.json', { schema: { hide: true } }, async (_req, reply) =>
    reply.type('application/json').send(charts),
  );
  app.get('/inspector/assets/:file', { schema: { hide: true } }, async (req, reply) => {
    const asset = ASSETS[(req.params as { file: string }).file];
    if (!asset) {
      throw new FlotillaError('not_found', 'no such inspector asset', {
        details: [{ path: 'file', message: 'unknown asset' }],
      });
    }
    return reply
      .type(asset.type)
      .header('cache-control', 'no-cache')
      .send(await readFile(asset.file()));
  });
}
