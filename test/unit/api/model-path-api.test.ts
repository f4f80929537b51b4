/**
 * `model_path` outside the model roots, through the HTTP API: a deploy, a preview and an update
 * naming a folder outside the roots (by `..`, by an absolute path, by a symlink to a folder or
 * to the definition file) answer 400 at `model_path`, and nothing is created or changed.
 * test/unit/revision-model-path.test.ts covers the resolver itself.
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../../src/api/build-app.ts';
import { createMetrics } from '../../../src/api/metrics.ts';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { createEmbeddedExecutor } from '../../../src/store/embedded-executor.ts';
import { migrate } from '../../../src/store/migrate.ts';
import { createStore } from '../../../src/store/store.ts';
import { FakeBackend } from '../../harness/fake-backend.ts';
import { type ErrorBodyJson, START_TIMEOUT_MS, send } from './in-memory-api.ts';

let base: string;
let root: string;
let outside: string;
let flotilla: Flotilla;
let app: FastifyInstance;
const definition = 'command = "sleep 1000"\n';

beforeAll(async () => {
  base = realpathSync(mkdtempSync(path.join(tmpdir(), 'flotilla-model-path-api-')));
  root = path.join(base, 'models');
  outside = path.join(base, 'elsewhere');
  mkdirSync(path.join(root, 'good'), { recursive: true });
  mkdirSync(outside, { recursive: true });
  writeFileSync(path.join(root, 'good', 'service-definition.toml'), definition);
  writeFileSync(path.join(outside, 'service-definition.toml'), definition);
  symlinkSync(outside, path.join(root, 'link-out'));
  mkdirSync(path.join(root, 'file-link-out'));
  symlinkSync(
    path.join(outside, 'service-definition.toml'),
    path.join(root, 'file-link-out', 'service-definition.toml'),
  );
  const exec = await createEmbeddedExecutor(null);
  await migrate(exec);
  flotilla = await createFlotilla({
    store: createStore(exec),
    backend: new FakeBackend(),
    modelRoots: [root],
    proxy: false,
    prober: false,
    runtime: { shards: 1, flushDelayMs: 0 },
  });
  app = buildApp({
    flotilla,
    metrics: createMetrics({ defaultMetrics: false }),
    token: 'unit-api-token-0123456789',
  });
}, START_TIMEOUT_MS);

afterAll(async () => {
  await app?.close();
  await flotilla?.close();
  if (base) rmSync(base, { recursive: true, force: true });
});

const escapes = () => [
  '../elsewhere',
  'good/../../elsewhere',
  './../elsewhere/service-definition.toml',
  outside,
  path.join(outside, 'service-definition.toml'),
  `${root}/../elsewhere`,
  `${root}-evil`,
  '/etc',
  '/',
  'link-out',
  path.join(root, 'link-out'),
  'link-out/service-definition.toml',
];

/**
 * A folder inside the root whose definition file is a symlink out: refused at the file (the
 * resolver's contract, see revision-model-path.test.ts), which is the field that escapes.
 */
const fileLinkOut = 'file-link-out';
function expectFileLinkRefused(res: { statusCode: number; json(): unknown }) {
  expect(res.statusCode).toBe(400);
  const e = (res.json() as ErrorBodyJson).error;
  expect(e.details).toEqual([
    {
      path: 'service-definition.toml',
      message: 'is a symlink to a file outside the allowed model roots; refused',
    },
  ]);
}

function expectModelPathRefused(res: { statusCode: number; json(): unknown }, p: string) {
  expect(res.statusCode, p).toBe(400);
  const e = (res.json() as ErrorBodyJson).error;
  expect(e.code, p).toBe('validation');
  expect(
    e.details.map((d) => d.path),
    p,
  ).toContain('model_path');
}

describe('model_path outside the model roots, through the API', () => {
  it('a folder inside the root deploys (the control case)', async () => {
    const res = await send(app, {
      method: 'POST',
      url: '/v1/deployments',
      payload: { name: 'inside', model_path: 'good', replicas: 0 },
    });
    expect(res.statusCode, res.body).toBe(201);
  });

  it('POST /v1/deployments with model_path through .., absolute paths and symlinks: 400 at model_path (at the file for a symlinked definition), nothing created', async () => {
    const before = (await flotilla.list({ includeDeleted: true })).length;
    for (const [i, p] of escapes().entries()) {
      const res = await send(app, {
        method: 'POST',
        url: '/v1/deployments',
        payload: { name: `escape-${i}`, model_path: p, replicas: 0 },
      });
      expectModelPathRefused(res, p);
    }
    expectFileLinkRefused(
      await send(app, {
        method: 'POST',
        url: '/v1/deployments',
        payload: { name: 'escape-file', model_path: fileLinkOut, replicas: 0 },
      }),
    );
    expect((await flotilla.list({ includeDeleted: true })).length).toBe(before);
  });

  it('POST /v1/revisions/preview refuses the same paths at model_path', async () => {
    for (const p of escapes()) {
      const res = await send(app, {
        method: 'POST',
        url: '/v1/revisions/preview',
        payload: { name: 'preview', model_path: p },
      });
      expectModelPathRefused(res, p);
    }
    expectFileLinkRefused(
      await send(app, {
        method: 'POST',
        url: '/v1/revisions/preview',
        payload: { name: 'preview', model_path: fileLinkOut },
      }),
    );
  });

  it('PATCH /v1/deployments/{id} refuses the same paths at model_path and keeps the revision', async () => {
    const revision = (await flotilla.get('inside')).revision_id;
    for (const p of escapes()) {
      const res = await send(app, {
        method: 'PATCH',
        url: '/v1/deployments/inside',
        payload: { model_path: p },
      });
      expectModelPathRefused(res, p);
    }
    expectFileLinkRefused(
      await send(app, {
        method: 'PATCH',
        url: '/v1/deployments/inside',
        payload: { model_path: fileLinkOut },
      }),
    );
    expect((await flotilla.get('inside')).revision_id).toBe(revision);
  });
});
