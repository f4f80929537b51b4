/**
 * Bad inputs for the embedded API (`createFlotilla()` methods) and the same through HTTP,
 * with what both must answer. Shared by the unit parity test (in-memory store) and the
 * integration one (PostgreSQL). Fixtures: `taken` (live, no replicas), `gone` (TERMINATED),
 * endpoint `ep` (test/unit/api/in-memory-api.ts `seedFixtures`).
 */
import type { FastifyInstance } from 'fastify';
import { type Flotilla, FlotillaError } from '../../../src/index.ts';
import { type ErrorBodyJson, send } from './in-memory-api.ts';

export interface ParityCase {
  name: string;
  embedded: (f: Flotilla) => Promise<unknown>;
  http: {
    method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
    url: string;
    payload?: unknown;
  };
  status: number;
  code: string;
  path: string;
}

const D = '/v1/deployments';
const ok = { name: 'fresh', command: 'sleep 1000', replicas: 0 };
const NUL_ID = 'a\u0000b';
const LONG_ID = 'a'.repeat(300);

/** A deploy case: the same body through `deploy` and POST /v1/deployments. */
const deploy = (
  name: string,
  body: Record<string, unknown>,
  status: number,
  code: string,
  path: string,
): ParityCase => ({
  name: `deploy: ${name}`,
  embedded: (f) => f.deploy(body as never),
  http: { method: 'POST', url: D, payload: body },
  status,
  code,
  path,
});

export const parityCases: ParityCase[] = [
  deploy('no name', {}, 400, 'validation', 'name'),
  deploy('upper-case name', { ...ok, name: 'Echo' }, 400, 'validation', 'name'),
  deploy('unknown field', { ...ok, replica_count: 2 }, 400, 'validation', 'replica_count'),
  deploy('replicas above 1000', { ...ok, replicas: 1001 }, 400, 'validation', 'replicas'),
  deploy(
    'min_replicas above max_replicas',
    { ...ok, min_replicas: 3, max_replicas: 2 },
    400,
    'validation',
    'min_replicas',
  ),
  deploy(
    'replicas above max_replicas',
    { ...ok, replicas: 5, max_replicas: 2 },
    400,
    'validation',
    'replicas',
  ),
  deploy(
    'replicas below min_replicas',
    { ...ok, replicas: 1, min_replicas: 2 },
    400,
    'validation',
    'replicas',
  ),
  deploy(
    'scaling_policy.max_replicas past the 1000 limit',
    { ...ok, scaling_policy: { max_replicas: Number.MAX_SAFE_INTEGER } },
    400,
    'validation',
    'scaling_policy.max_replicas',
  ),
  deploy(
    'a NUL byte in an environ value',
    { ...ok, environ: { A: 'a\u0000b' } },
    400,
    'validation',
    'environ.A',
  ),
  deploy('reserved name health', { ...ok, name: 'health' }, 400, 'validation', 'name'),
  deploy('reserved name inspector', { ...ok, name: 'inspector' }, 400, 'validation', 'name'),
  deploy('a live name', { ...ok, name: 'taken' }, 409, 'conflict', 'name'),
  deploy(
    'model_path outside the model roots',
    { name: 'fresh', model_path: '/etc', replicas: 0 },
    400,
    'validation',
    'model_path',
  ),
  deploy(
    'unknown runtime variant',
    { ...ok, runtime_variant: 'tensorflow' },
    400,
    'validation',
    'runtime_variant',
  ),
  {
    name: 'get: unknown deployment',
    embedded: (f) => f.get('nobody'),
    http: { method: 'GET', url: `${D}/nobody` },
    status: 404,
    code: 'not_found',
    path: 'id',
  },
  {
    name: 'get: an id with a NUL byte',
    embedded: (f) => f.get(NUL_ID),
    http: { method: 'GET', url: `${D}/a%00b` },
    status: 400,
    code: 'validation',
    path: 'id',
  },
  {
    name: 'get: an id of 300 characters',
    embedded: (f) => f.get(LONG_ID),
    http: { method: 'GET', url: `${D}/${LONG_ID}` },
    status: 400,
    code: 'validation',
    path: 'id',
  },
  {
    name: 'update: unknown field',
    embedded: (f) => f.update('taken', { colour: 'red' } as never),
    http: { method: 'PATCH', url: `${D}/taken`, payload: { colour: 'red' } },
    status: 400,
    code: 'validation',
    path: 'colour',
  },
  {
    name: 'update: a deleted deployment',
    embedded: (f) => f.update('gone', { environ: { A: 'b' } }),
    http: { method: 'PATCH', url: `${D}/gone`, payload: { environ: { A: 'b' } } },
    status: 409,
    code: 'invalid_state',
    path: 'state',
  },
  {
    name: 'scale: replicas as a string',
    embedded: (f) => f.scale('taken', '3' as never),
    http: { method: 'POST', url: `${D}/taken/scale`, payload: { replicas: '3' } },
    status: 400,
    code: 'validation',
    path: 'replicas',
  },
  {
    name: 'scale: above max_replicas',
    embedded: (f) => f.scale('taken', 11),
    http: { method: 'POST', url: `${D}/taken/scale`, payload: { replicas: 11 } },
    status: 400,
    code: 'validation',
    path: 'replicas',
  },
  {
    name: 'scale: a deleted deployment',
    embedded: (f) => f.scale('gone', 1),
    http: { method: 'POST', url: `${D}/gone/scale`, payload: { replicas: 1 } },
    status: 409,
    code: 'invalid_state',
    path: 'state',
  },
  {
    name: 'destroy: a deleted deployment',
    embedded: (f) => f.destroy('gone'),
    http: { method: 'DELETE', url: `${D}/gone` },
    status: 409,
    code: 'invalid_state',
    path: 'state',
  },
  {
    name: 'events: unknown deployment',
    embedded: (f) => f.events('nobody'),
    http: { method: 'GET', url: `${D}/nobody/events` },
    status: 404,
    code: 'not_found',
    path: 'id',
  },
  {
    name: 'logs: unknown replica',
    embedded: (f) => f.logs('taken', { replica: 'nobody-r1' }),
    http: { method: 'GET', url: `${D}/taken/logs?replica=nobody-r1` },
    status: 404,
    code: 'not_found',
    path: 'replica',
  },
  {
    name: 'preview: unknown field',
    embedded: (f) => f.previewRevision({ ...ok, bogus: 1 } as never),
    http: { method: 'POST', url: '/v1/revisions/preview', payload: { ...ok, bogus: 1 } },
    status: 400,
    code: 'validation',
    path: 'bogus',
  },
  {
    name: 'scaling group: bad statuses',
    embedded: (f) =>
      f.putScalingGroup('default', { route_cleanup_target_statuses: ['terminated'] }),
    http: {
      method: 'PUT',
      url: '/v1/scaling-groups/default',
      payload: { route_cleanup_target_statuses: ['terminated'] },
    },
    status: 400,
    code: 'validation',
    path: 'route_cleanup_target_statuses[0]',
  },
  {
    name: 'scaling group: bad name',
    embedded: (f) => f.getScalingGroup('Bad_Group'),
    http: { method: 'GET', url: '/v1/scaling-groups/Bad_Group' },
    status: 400,
    code: 'validation',
    path: 'name',
  },
  {
    name: 'endpoint create: an existing endpoint',
    embedded: (f) => f.createEndpoint({ name: 'ep', backends: [] }),
    http: { method: 'POST', url: '/v1/endpoints', payload: { name: 'ep', backends: [] } },
    status: 409,
    code: 'conflict',
    path: 'name',
  },
  {
    name: 'endpoint create: a live deployment name',
    embedded: (f) => f.createEndpoint({ name: 'taken', backends: [] }),
    http: { method: 'POST', url: '/v1/endpoints', payload: { name: 'taken', backends: [] } },
    status: 409,
    code: 'conflict',
    path: 'name',
  },
  {
    name: 'endpoint put: a live deployment name',
    embedded: (f) => f.putEndpoint({ name: 'taken', backends: [] }),
    http: { method: 'PUT', url: '/v1/endpoints/taken', payload: { backends: [] } },
    status: 409,
    code: 'conflict',
    path: 'name',
  },
  {
    name: 'endpoint create: reserved name metrics',
    embedded: (f) => f.createEndpoint({ name: 'metrics', backends: [] }),
    http: { method: 'POST', url: '/v1/endpoints', payload: { name: 'metrics', backends: [] } },
    status: 400,
    code: 'validation',
    path: 'name',
  },
  {
    name: 'endpoint create: a backend with a NUL byte',
    embedded: (f) =>
      f.createEndpoint({ name: 'ep2', backends: [{ deployment: NUL_ID, weight: 1 }] }),
    http: {
      method: 'POST',
      url: '/v1/endpoints',
      payload: { name: 'ep2', backends: [{ deployment: NUL_ID, weight: 1 }] },
    },
    status: 400,
    code: 'validation',
    path: 'backends[0].deployment',
  },
  {
    name: 'endpoint get: unknown',
    embedded: (f) => f.getEndpoint('nothing'),
    http: { method: 'GET', url: '/v1/endpoints/nothing' },
    status: 404,
    code: 'not_found',
    path: 'name',
  },
  {
    name: 'endpoint delete: unknown',
    embedded: (f) => f.deleteEndpoint('nothing'),
    http: { method: 'DELETE', url: '/v1/endpoints/nothing' },
    status: 404,
    code: 'not_found',
    path: 'name',
  },
];

/** What the embedded API throws for `c`, as status, code, message and details. */
export async function embeddedError(flotilla: Flotilla, c: ParityCase) {
  const err = await c.embedded(flotilla).then(
    () => null,
    (e: unknown) => e,
  );
  if (!(err instanceof FlotillaError)) {
    throw new Error(`embedded ${c.name}: expected a FlotillaError, got ${String(err)}`);
  }
  const details = err.details.length ? err.details : [{ path: '(request)', message: err.message }];
  return { status: err.status, code: err.code, message: err.message, details };
}

/** What the HTTP API answers for `c`, in the same terms. */
export async function httpError(app: FastifyInstance, c: ParityCase) {
  const res = await send(app, c.http);
  const body = res.json() as ErrorBodyJson;
  return { status: res.statusCode, ...body.error };
}
