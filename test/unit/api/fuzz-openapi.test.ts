/**
 * Property-based fuzzing of the HTTP API, driven by its own OpenAPI document: every operation
 * of `GET /v1/openapi.json` (and the inspector's hidden /v1 routes) gets requests built from its
 * schemas, valid and mutated (wrong types, unknown keys, missing fields, garbage JSON, hostile
 * path parameters). Invariants: no answer is 5xx, every 4xx is in the error shape with a field
 * path, and a refused request leaves the store exactly as it was.
 *
 * Runs: FLOTILLA_FUZZ_RUNS (default 2,000, so `npm test` stays short on a loaded machine;
 * the figure is 10,000). Replay a failure with FLOTILLA_TEST_SEED=<seed printed>, and
 * only the failing case with FLOTILLA_FUZZ_PATH=<the path fast-check prints>.
 */
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../../src/api/build-app.ts';
import { createMetrics } from '../../../src/api/metrics.ts';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { createEmbeddedExecutor } from '../../../src/store/embedded-executor.ts';
import { migrate } from '../../../src/store/migrate.ts';
import type { SqlExecutor } from '../../../src/store/sql-executor.ts';
import { createStore } from '../../../src/store/store.ts';
import { FakeBackend } from '../../harness/fake-backend.ts';
import { auth, repo, START_TIMEOUT_MS, seedFixtures } from './in-memory-api.ts';

const RUNS = Number(process.env.FLOTILLA_FUZZ_RUNS ?? 2_000);
const SEED = process.env.FLOTILLA_TEST_SEED
  ? Number(process.env.FLOTILLA_TEST_SEED)
  : Math.floor(Math.random() * 2 ** 31);

type Schema = Record<string, unknown> & {
  type?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  anyOf?: Schema[];
  enum?: unknown[];
  additionalProperties?: boolean | Schema;
};
interface Param {
  name: string;
  in: 'path' | 'query' | 'header';
  required?: boolean;
  schema: Schema;
}
interface Operation {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  params: Param[];
  body?: Schema;
}

let exec: SqlExecutor;
let flotilla: Flotilla;
let app: FastifyInstance;
let operations: Operation[] = [];

beforeAll(async () => {
  exec = await createEmbeddedExecutor(null);
  await migrate(exec);
  flotilla = await createFlotilla({
    store: createStore(exec),
    backend: new FakeBackend(),
    modelRoots: [repo],
    proxy: false,
    prober: false,
    runtime: { shards: 2, flushDelayMs: 0 },
  });
  app = buildApp({
    flotilla,
    metrics: createMetrics({ defaultMetrics: false }),
    token: auth.authorization.slice('Bearer '.length),
  });
  await seedFixtures(flotilla);
  const doc = (await app.inject({ method: 'GET', url: '/v1/openapi.json', headers: auth })).json();
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
    for (const [method, op] of Object.entries(ops)) {
      const o = op as {
        parameters?: Param[];
        requestBody?: { content: { 'application/json': { schema: Schema } } };
      };
      operations.push({
        method: method.toUpperCase() as Operation['method'],
        path,
        params: o.parameters ?? [],
        ...(o.requestBody ? { body: o.requestBody.content['application/json'].schema } : {}),
      });
    }
  }
  // Hidden from the document but served under /v1: the inspector's reads.
  const idParam: Param = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
  operations.push(
    { method: 'GET', path: '/v1/deployments/{id}/state', params: [idParam] },
    {
      method: 'GET',
      path: '/v1/inspector/fleet',
      params: [{ name: 'id', in: 'query', schema: { type: 'string' } }],
    },
  );
  operations = operations.filter((o) => o.path !== '/v1/openapi.json');
}, START_TIMEOUT_MS);

afterAll(async () => {
  await app?.close();
  await flotilla?.close();
});

// ------------------------------------------------------------------ generators

/** Names drawn from a small pool so creates, conflicts, updates and deletes meet each other. */
const NAME_POOL = ['taken', 'gone', 'ep', 'a', 'b', 'c', 'model-x', 'health', 'ready', 'inspector'];
const hostileString = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    '..',
    '../taken',
    '%2e%2e',
    '%2F',
    'a%2Fb',
    '%FF%FE',
    '%00',
    '\u0000',
    'x'.repeat(129),
    'x'.repeat(2000),
    'Taken',
    '-a',
    'a-',
    '😀',
    "'; DROP TABLE deployments; --",
    '{"$ne":null}',
    '9007199254740993',
    '-1',
    '1e309',
    'NaN',
  ),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
);
const anyJson = fc.jsonValue({ maxDepth: 3 });

function fromSchema(s: Schema, key = ''): fc.Arbitrary<unknown> {
  if (s.enum) return fc.constantFrom(...s.enum);
  if (s.anyOf) return fc.oneof(...s.anyOf.map((x) => fromSchema(x, key)));
  switch (s.type) {
    case 'string': {
      if (key === 'name' || key === 'deployment' || key === 'scaling_group') {
        return fc.oneof(fc.constantFrom(...NAME_POOL), fc.stringMatching(/^[a-z0-9]{1,8}$/));
      }
      if (key === 'command') return fc.constant('sleep 1000');
      return fc.oneof(
        fc.string({ minLength: (s.minLength as number) ?? 0, maxLength: 12 }),
        fc.constant('x'),
      );
    }
    case 'integer': {
      const min = (s.minimum as number) ?? 0;
      const max = (s.maximum as number) ?? min + 10;
      // Replica counts stay small: a valid request for 1000 replicas is legal but slow.
      if (/replicas/.test(key)) return fc.integer({ min, max: Math.min(max, min + 2) });
      return fc.oneof(fc.integer({ min, max: Math.min(max, min + 5) }), fc.constant(max));
    }
    case 'number': {
      const min = (s.minimum as number) ?? (s.exclusiveMinimum as number) ?? 0;
      const max = (s.maximum as number) ?? min + 100;
      return fc.double({ min, max, noNaN: true, noDefaultInfinity: true });
    }
    case 'boolean':
      return fc.boolean();
    case 'array':
      return fc.array(s.items ? fromSchema(s.items, key) : anyJson, {
        maxLength: Math.min((s.maxItems as number) ?? 3, 3),
      });
    case 'object': {
      const props = s.properties ?? {};
      const required = new Set(s.required ?? []);
      const keys = Object.keys(props);
      if (keys.length === 0) {
        return fc.dictionary(
          fc.string({ minLength: 1, maxLength: 8 }),
          typeof s.additionalProperties === 'object' && s.additionalProperties.type === 'string'
            ? fc.string({ maxLength: 8 })
            : anyJson,
          { maxKeys: 3 },
        );
      }
      return fc.record(Object.fromEntries(keys.map((k) => [k, fromSchema(props[k]!, k)])), {
        requiredKeys: keys.filter((k) => required.has(k)),
      });
    }
    default:
      return anyJson;
  }
}

/** A schema value with one thing broken: a field of the wrong type, an unknown key, a gap. */
function mutated(s: Schema): fc.Arbitrary<unknown> {
  const keys = Object.keys(s.properties ?? {});
  return fc
    .tuple(fromSchema(s), fc.constantFrom('wrong', 'unknown', 'drop', 'null'), anyJson)
    .chain(([value, how, junk]) =>
      (keys.length > 0 ? fc.constantFrom(...keys) : fc.constant('x')).map((k) => {
        if (value === null || typeof value !== 'object' || Array.isArray(value)) return junk;
        const v = { ...(value as Record<string, unknown>) };
        if (how === 'wrong') v[k] = junk;
        else if (how === 'unknown') v[`${k}_zz`] = junk;
        else if (how === 'drop') delete v[k];
        else v[k] = null;
        return v;
      }),
    );
}

/** A deploy that passes validation (a command, a pooled name, few replicas). */
const validDeploy = fc.record({
  name: fc.constantFrom(...NAME_POOL),
  command: fc.constant('sleep 1000'),
  replicas: fc.integer({ min: 0, max: 2 }),
});

type Body =
  | { kind: 'json'; value: unknown }
  | { kind: 'raw'; text: string; type: string }
  | { kind: 'none' };

function bodyFor(op: Operation): fc.Arbitrary<Body> {
  const json = (a: fc.Arbitrary<unknown>) => a.map((value): Body => ({ kind: 'json', value }));
  const raw = fc.record({
    kind: fc.constant('raw' as const),
    text: fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.constantFrom('{', '{"name":', 'null', '[]', '"x"', '1', '{"__proto__":{"x":1}}'),
    ),
    type: fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded'),
  });
  const none = fc.constant<Body>({ kind: 'none' });
  if (!op.body) return fc.oneof({ weight: 8, arbitrary: none }, { weight: 1, arbitrary: raw });
  const arbs: Array<fc.WeightedArbitrary<Body>> = [
    { weight: 4, arbitrary: json(fromSchema(op.body)) },
    { weight: 4, arbitrary: json(mutated(op.body)) },
    { weight: 1, arbitrary: json(anyJson) },
    { weight: 1, arbitrary: raw },
    { weight: 1, arbitrary: none },
  ];
  if (op.path === '/v1/deployments' && op.method === 'POST') {
    arbs.push({ weight: 3, arbitrary: json(validDeploy) });
  }
  return fc.oneof(...arbs);
}

function paramValue(p: Param): fc.Arbitrary<string> {
  const valid = fromSchema(p.schema, p.name === 'id' || p.name === 'name' ? 'name' : p.name).map(
    (v) => String(v),
  );
  return fc.oneof({ weight: 3, arbitrary: valid }, { weight: 2, arbitrary: hostileString });
}

interface Req {
  op: Operation;
  url: string;
  body: Body;
}

const request: fc.Arbitrary<Req> = fc
  .integer({ min: 0, max: 10_000 })
  .chain((i) => {
    const op = operations[i % operations.length]!;
    const pathParams = op.params.filter((p) => p.in === 'path');
    const queryParams = op.params.filter((p) => p.in === 'query');
    return fc.record({
      op: fc.constant(op),
      path: fc.tuple(...pathParams.map(paramValue)),
      query: fc.tuple(...queryParams.map((p) => fc.option(paramValue(p), { nil: undefined }))),
      extraQuery: fc.option(fc.tuple(hostileString, hostileString), { nil: undefined }),
      rawPath: fc.boolean(),
      body: bodyFor(op),
    });
  })
  .map(({ op, path, query, extraQuery, rawPath, body }) => {
    let i = 0;
    // Mostly percent-encoded; sometimes the value goes into the URL as it is (hostile).
    const url = op.path.replace(/\{[^}]+\}/g, () => {
      const v = path[i++] ?? '';
      return rawPath ? v.replace(/[?#\s]/g, '') : encodeURIComponent(v);
    });
    const qs = new URLSearchParams();
    op.params
      .filter((p) => p.in === 'query')
      .forEach((p, j) => {
        const v = query[j];
        if (v !== undefined) qs.append(p.name, v);
      });
    if (extraQuery) qs.append(extraQuery[0], extraQuery[1]);
    const q = qs.toString();
    return { op, url: q ? `${url}?${q}` : url, body };
  });

// ------------------------------------------------------------------ the store's rows

/**
 * Rows that requests write (not the columns the actors move on their own), as a count and a
 * digest per table computed in one statement, so the cost stays flat as the tables grow.
 */
const SNAPSHOT_SQL = [
  ['deployments', 'id, name, runtime_variant, spec, revision_id, target_replicas', 'id'],
  ['revisions', 'id, deployment_id, number, spec, session', 'id'],
  ['scaling_groups', 'name, route_cleanup_target_statuses, settings, updated_at', 'name'],
  ['endpoints', 'name, backends, updated_at', 'name'],
]
  .map(
    ([table, cols, key]) =>
      `SELECT '${table}' AS t, count(*) AS n, md5(coalesce(string_agg(r::text, '|' ORDER BY r.${key}), '')) AS h ` +
      `FROM (SELECT ${cols} FROM ${table}) r`,
  )
  .join(' UNION ALL ');

async function snapshot(): Promise<string> {
  return JSON.stringify(await exec.query(SNAPSHOT_SQL));
}

// ------------------------------------------------------------------ the property

describe('OpenAPI-driven fuzzing', () => {
  it(
    `${RUNS} generated requests: no 5xx, every 4xx in the error shape with a field path, no write by a refused request`,
    async () => {
      expect(operations.length).toBeGreaterThanOrEqual(18);
      // The snapshot sees a write (so "unchanged" is not vacuous).
      const empty = await snapshot();
      const put = await app.inject({
        method: 'PUT',
        url: '/v1/scaling-groups/probe',
        headers: { ...auth, 'content-type': 'application/json' },
        payload: JSON.stringify({ settings: { x: 1 } }),
      });
      expect(put.statusCode, put.body).toBe(200);
      expect(await snapshot()).not.toBe(empty);
      const seen = new Map<string, number>();
      const statuses = new Map<number, number>();
      const started = Date.now();
      try {
        await fc.assert(
          fc.asyncProperty(request, async ({ op, url, body }) => {
            const before = await snapshot();
            const headers: Record<string, string> = { ...auth };
            let payload: string | undefined;
            if (body.kind === 'json') {
              headers['content-type'] = 'application/json';
              payload = JSON.stringify(body.value) ?? 'null';
            } else if (body.kind === 'raw') {
              headers['content-type'] = body.type;
              payload = body.text;
            }
            const res = await app.inject({
              method: op.method,
              url,
              headers,
              ...(payload !== undefined ? { payload } : {}),
            });
            const key = `${op.method} ${op.path}`;
            seen.set(key, (seen.get(key) ?? 0) + 1);
            statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
            const where = `${op.method} ${url} -> ${res.statusCode} ${res.body.slice(0, 400)} (body: ${(payload ?? '').slice(0, 300)})`;
            if (res.statusCode >= 500) throw new Error(`5xx: ${where}`);
            if (res.statusCode >= 400) {
              let parsed: unknown;
              try {
                parsed = res.json();
              } catch {
                throw new Error(`4xx body is not JSON: ${where}`);
              }
              const e = (parsed as { error?: Record<string, unknown> }).error;
              const details = e?.details as Array<Record<string, unknown>> | undefined;
              const ok =
                typeof e?.code === 'string' &&
                typeof e.message === 'string' &&
                Array.isArray(details) &&
                details.length > 0 &&
                details.every(
                  (d) =>
                    typeof d.path === 'string' &&
                    d.path.length > 0 &&
                    typeof d.message === 'string',
                );
              if (!ok) {
                const bad = details?.filter(
                  (d) =>
                    typeof d.path !== 'string' || d.path === '' || typeof d.message !== 'string',
                );
                throw new Error(
                  `4xx not in the error shape (${JSON.stringify(bad ?? e).slice(0, 300)}): ${where}`,
                );
              }
              const after = await snapshot();
              if (after !== before) {
                throw new Error(`refused request changed the store: ${where}`);
              }
            }
          }),
          {
            numRuns: RUNS,
            seed: SEED,
            endOnFailure: true,
            ...(process.env.FLOTILLA_FUZZ_PATH ? { path: process.env.FLOTILLA_FUZZ_PATH } : {}),
          },
        );
      } catch (err) {
        console.error(
          `fuzz failed: replay with FLOTILLA_TEST_SEED=${SEED} (and FLOTILLA_FUZZ_PATH=<path above> for that one case)`,
        );
        throw err;
      }
      const ms = Date.now() - started;
      console.log(
        `fuzz: ${RUNS} requests in ${ms} ms (seed ${SEED}); statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
      );
      // Every operation was exercised (a short run, e.g. 50, may miss one by chance).
      if (RUNS >= 500)
        for (const op of operations) expect(seen.get(`${op.method} ${op.path}`)).toBeGreaterThan(0);
      // Valid and invalid requests both occurred.
      const ok = [...statuses].filter(([s]) => s < 300).reduce((n, [, c]) => n + c, 0);
      expect(ok).toBeGreaterThan(0);
      expect(ok).toBeLessThan(RUNS);
    },
    30 * 60_000,
  );

  // Found by this fuzzer (seed 1988227647): an unknown empty key in a service definition was
  // reported at the path "" (no field named).
  it('an unknown empty key in service_definition is reported at a non-empty path', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/revisions/preview',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'x', command: 'sleep 1', service_definition: { '': 1 } }),
    });
    expect(res.statusCode).toBe(400);
    const paths = (res.json() as { error: { details: Array<{ path: string }> } }).error.details.map(
      (d) => d.path,
    );
    expect(paths).toEqual(['""']);
  });
});
