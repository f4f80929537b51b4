/**
 * The embedded-vs-HTTP parity of test/unit/api/embedded-http-parity.test.ts, over PostgreSQL
 * (the store's own refusals, such as a taken name, come from PostgreSQL's constraints here):
 * every bad input is refused by `createFlotilla()` and by the HTTP API with the same status,
 * code, message and details.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../../src/api/build-app.ts';
import { createMetrics } from '../../../src/api/metrics.ts';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { FakeBackend } from '../../harness/fake-backend.ts';
import { services } from '../../harness/isolation.ts';
import { seedFixtures, TOKEN } from '../../unit/api/in-memory-api.ts';
import { embeddedError, httpError, parityCases } from '../../unit/api/parity-cases.ts';

const repo = resolve(import.meta.dirname, '../../..');
const schema = `t_api_parity_${randomBytes(3).toString('hex')}`;
let passed = true;
let flotilla: Flotilla;
let app: FastifyInstance;

beforeAll(async () => {
  const admin = new pg.Client({ connectionString: services().databaseUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA "${schema}"`);
  await admin.end();
  const url = new URL(services().databaseUrl);
  url.searchParams.set('options', `-c search_path=${schema}`);
  flotilla = await createFlotilla({
    databaseUrl: url.toString(),
    dataDir: mkdtempSync(join(tmpdir(), 'flotilla-parity-')),
    backend: new FakeBackend(),
    modelRoots: [repo],
    proxy: false,
    prober: false,
    runtime: { shards: 2 },
  });
  app = buildApp({ flotilla, metrics: createMetrics({ defaultMetrics: false }), token: TOKEN });
  await seedFixtures(flotilla);
});

afterAll(async () => {
  await app?.close();
  await flotilla?.close();
  if (!passed) {
    console.log(`[isolation] kept schema ${schema} of failed parity tests`);
    return;
  }
  const admin = new pg.Client({ connectionString: services().databaseUrl });
  await admin.connect();
  await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
  await admin.end();
});

describe('embedded API and HTTP API refuse alike (PostgreSQL)', () => {
  it.each(parityCases)('$name -> $status $code at "$path" through both', async (c) => {
    try {
      const viaHttp = await httpError(app, c);
      expect(await embeddedError(flotilla, c)).toEqual(viaHttp);
      expect(viaHttp.status).toBe(c.status);
      expect(viaHttp.code).toBe(c.code);
      expect(viaHttp.details.map((d) => d.path)).toContain(c.path);
    } catch (err) {
      passed = false;
      throw err;
    }
  });
});
