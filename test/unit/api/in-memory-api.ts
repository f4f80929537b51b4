/**
 * An API under test without services: `createFlotilla` on an in-memory PGlite store (no data
 * directory) and the in-process fake backend (no replica processes), no proxy, no prober,
 * and `buildApp` over it, driven with `app.inject()` (no port).
 */
import { resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../src/api/build-app.ts';
import { createMetrics } from '../../../src/api/metrics.ts';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { createEmbeddedExecutor } from '../../../src/store/embedded-executor.ts';
import { migrate } from '../../../src/store/migrate.ts';
import { createStore } from '../../../src/store/store.ts';
import { FakeBackend } from '../../harness/fake-backend.ts';
import { waitFor } from '../../harness/wait.ts';

export const repo = resolve(import.meta.dirname, '../../..');
export const TOKEN = 'unit-api-token-0123456789';
export const auth = { authorization: `Bearer ${TOKEN}` };

/**
 * Starting PGlite compiles its WebAssembly and runs initdb: about two seconds on an idle
 * machine, far longer on a loaded one, so start hooks get a generous deadline.
 */
export const START_TIMEOUT_MS = 120_000;

export interface InMemoryApi {
  flotilla: Flotilla;
  app: FastifyInstance;
  backend: FakeBackend;
  close(): Promise<void>;
}

export async function startInMemoryApi(opts: { token?: string | null } = {}): Promise<InMemoryApi> {
  const exec = await createEmbeddedExecutor(null);
  await migrate(exec);
  const backend = new FakeBackend();
  const flotilla = await createFlotilla({
    store: createStore(exec),
    backend,
    modelRoots: [repo],
    proxy: false,
    prober: false,
    runtime: { shards: 2, flushDelayMs: 0 },
  });
  const token = opts.token === undefined ? TOKEN : opts.token;
  const app = buildApp({
    flotilla,
    metrics: createMetrics({ defaultMetrics: false }),
    ...(token ? { token } : {}),
  });
  return {
    flotilla,
    app,
    backend,
    async close() {
      await app.close();
      await flotilla.close();
    },
  };
}

/**
 * The fixtures of the bad-request matrix (test/unit/api/bad-request-cases.ts): a live
 * deployment `taken` with no replicas, a TERMINATED one `gone`, an endpoint `ep` on `taken`.
 */
export async function seedFixtures(flotilla: Flotilla): Promise<void> {
  await flotilla.deploy({ name: 'taken', command: 'sleep 1000', replicas: 0 });
  await flotilla.deploy({ name: 'gone', command: 'sleep 1000', replicas: 0 });
  await flotilla.destroy('gone');
  await waitFor(async () => (await flotilla.get('gone')).state === 'TERMINATED', {
    timeoutMs: 10_000,
    message: 'gone never TERMINATED',
  });
  await flotilla.createEndpoint({ name: 'ep', backends: [{ deployment: 'taken', weight: 1 }] });
}

/** `app.inject` with a JSON body (a string body is sent as it is). */
export async function send(
  app: FastifyInstance,
  req: {
    method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
    url: string;
    payload?: unknown;
    headers?: Record<string, string>;
  },
) {
  const headers: Record<string, string> = { ...auth, ...(req.headers ?? {}) };
  if (headers.authorization === '') delete headers.authorization;
  if (req.payload !== undefined && typeof req.payload !== 'string') {
    headers['content-type'] ??= 'application/json';
  }
  return app.inject({
    method: req.method,
    url: req.url,
    headers,
    ...(req.payload !== undefined
      ? { payload: typeof req.payload === 'string' ? req.payload : JSON.stringify(req.payload) }
      : {}),
  });
}

export interface ErrorBodyJson {
  error: { code: string; message: string; details: Array<{ path: string; message: string }> };
}
