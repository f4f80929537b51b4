/**
 * One conformance suite for the Store port, run against every adapter: real PostgreSQL (an
 * isolated schema per test) and the embedded PGlite (a fresh data dir per test).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, onTestFinished, type TestContext } from 'vitest';
import { FlotillaError } from '../../../src/domain/errors.ts';
import type { SessionSpec } from '../../../src/domain/session.ts';
import { createEmbeddedExecutor } from '../../../src/store/embedded-executor.ts';
import { migrate, migrations } from '../../../src/store/migrate.ts';
import { createPostgresExecutor } from '../../../src/store/postgres-executor.ts';
import type { SqlExecutor } from '../../../src/store/sql-executor.ts';
import { type ActorWrite, createStore, openStore, type Store } from '../../../src/store/store.ts';
import { isolatedDatabase, services } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';

interface Adapter {
  name: 'postgres' | 'embedded';
  /** A fresh, unmigrated database for this test, closed when the test ends. */
  executor(ctx: TestContext): Promise<SqlExecutor>;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'flotilla-store-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * initdb costs PGlite ~2 s; copying a freshly initialised (unmigrated) data dir costs ~0.2 s.
 * Only the suite does this: openStore's own tests below start from an empty directory.
 */
let template: Promise<string> | undefined;
function embeddedTemplate(): Promise<string> {
  template ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flotilla-store-template-'));
    await (await createEmbeddedExecutor(dir)).close();
    return dir;
  })();
  return template;
}
afterAll(async () => {
  if (template) await rm(await template, { recursive: true, force: true });
});

const adapters: Adapter[] = [
  {
    name: 'postgres',
    async executor(ctx) {
      const { url } = await isolatedDatabase(ctx);
      const exec = createPostgresExecutor(url);
      onTestFinished(() => exec.close());
      return exec;
    },
  },
  {
    name: 'embedded',
    async executor() {
      const dir = await tempDir();
      await cp(await embeddedTemplate(), dir, { recursive: true });
      const exec = await createEmbeddedExecutor(dir);
      onTestFinished(() => exec.close());
      return exec;
    },
  },
];

/** Counts round trips: every query, and BEGIN + COMMIT for a transaction. */
function counting(inner: SqlExecutor): { exec: SqlExecutor; count: () => number } {
  let n = 0;
  const wrap = (e: SqlExecutor): SqlExecutor => ({
    kind: e.kind,
    query(text, params) {
      n++;
      return e.query(text, params);
    },
    transaction(fn) {
      n += 2;
      return e.transaction((tx) => fn(wrap(tx)));
    },
    close: () => e.close(),
  });
  return { exec: wrap(inner), count: () => n };
}

const session: SessionSpec = {
  runtime_variant: 'custom',
  command: ['node', 'server.js', '--port', '{port}'],
  environ: {},
  port: 8000,
  health: {
    path: '/health',
    interval_s: 5,
    timeout_s: 2,
    healthy_threshold: 1,
    unhealthy_threshold: 3,
    startup_timeout_s: 300,
  },
  resources: { cpu: 1, mem: 1 << 30, gpu: 0 },
};

function deploymentInput(id: string, name: string) {
  return {
    id,
    name,
    runtime_variant: 'custom',
    spec: { name, replicas: 2, model: { path: '/models/x' } },
    target_replicas: 2,
    revision: { id: `${id}-r1`, number: 1, spec: { name, merged: true }, session },
  };
}

function snapshotWrite(
  actorId: string,
  deploymentId: string,
  expectedVersion: number,
  to: string,
  extra: Partial<ActorWrite> = {},
): ActorWrite {
  return {
    actorId,
    kind: 'replica',
    deploymentId,
    parentId: deploymentId,
    state: to,
    snapshot: { value: to, context: { actorId, pad: 'x'.repeat(200) } },
    expectedVersion,
    transition: { from: null, to, event: 'test.step', reason: null, at: new Date() },
    ...extra,
  };
}

async function expectFlotillaError(p: Promise<unknown>, code: string): Promise<FlotillaError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FlotillaError);
  expect((err as FlotillaError).code).toBe(code);
  return err as FlotillaError;
}

describe.each(adapters)('store on $name', (adapter) => {
  async function freshStore(ctx: TestContext): Promise<{ store: Store; exec: SqlExecutor }> {
    const exec = await adapter.executor(ctx);
    await migrate(exec);
    return { store: createStore(exec), exec };
  }

  describe('migrations', () => {
    it('applies every migration once and nothing on a second run', async (ctx) => {
      const exec = await adapter.executor(ctx);
      expect(await migrate(exec)).toEqual({ applied: migrations.map((m) => m.version) });
      expect(await migrate(exec)).toEqual({ applied: [] });
      const rows = await exec.query<{ version: number }>(
        'SELECT version FROM schema_migrations ORDER BY version',
      );
      expect(rows.map((r) => Number(r.version))).toEqual(migrations.map((m) => m.version));
    });

    it('two concurrent migrate() on a fresh schema both succeed and apply it once', async (ctx) => {
      const a = await adapter.executor(ctx);
      // PostgreSQL: a second pool, as a second process would have. PGlite has one connection
      // per data dir, so the race is two callers on one executor.
      let b = a;
      if (adapter.name === 'postgres') {
        const url = await isolatedUrlOf(a);
        b = createPostgresExecutor(url);
        onTestFinished(() => b.close());
      }
      const [ra, rb] = await Promise.all([migrate(a), migrate(b)]);
      const applied = [...ra.applied, ...rb.applied].sort((x, y) => x - y);
      expect(applied).toEqual(migrations.map((m) => m.version));
      const [count] = await a.query<{ n: number }>('SELECT count(*)::int AS n FROM deployments');
      expect(count?.n).toBe(0);
    });

    it('refuses a schema newer than the code knows', async (ctx) => {
      const exec = await adapter.executor(ctx);
      await migrate(exec);
      await exec.query("INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')");
      const err = await expectFlotillaError(migrate(exec), 'internal');
      expect(err.message).toMatch(/version 9999/);
    });
  });

  describe('deployments and revisions', () => {
    it('creates a deployment with its first revision and reads it by id and by name', async (ctx) => {
      const { store } = await freshStore(ctx);
      const created = await store.createDeployment(deploymentInput('d-1', 'echo'));
      expect(created).toMatchObject({
        id: 'd-1',
        name: 'echo',
        runtime_variant: 'custom',
        revision_id: 'd-1-r1',
        target_replicas: 2,
        state: 'PENDING',
        reason: null,
        deleted_at: null,
      });
      expect(created.spec).toEqual(deploymentInput('d-1', 'echo').spec);
      expect(Date.parse(created.created_at)).not.toBeNaN();
      expect(await store.getDeployment('d-1')).toEqual(created);
      expect(await store.getDeployment('echo')).toEqual(created);
      expect(await store.getDeployment('nope')).toBeNull();
      const rev = await store.getRevision('d-1-r1');
      expect(rev).toMatchObject({ id: 'd-1-r1', deployment_id: 'd-1', number: 1, session });
      expect(rev?.spec).toEqual({ name: 'echo', merged: true });
    });

    it('a duplicate live name is a conflict on name and writes nothing', async (ctx) => {
      const { store, exec } = await freshStore(ctx);
      await store.createDeployment(deploymentInput('d-1', 'echo'));
      const err = await expectFlotillaError(
        store.createDeployment(deploymentInput('d-2', 'echo')),
        'conflict',
      );
      expect(err.status).toBe(409);
      expect(err.message).toBe('deployment "echo" already exists');
      expect(err.details[0]?.path).toBe('name');
      expect(await store.getDeployment('d-2')).toBeNull();
      expect(await store.getRevision('d-2-r1')).toBeNull();
      const [n] = await exec.query<{ n: number }>('SELECT count(*)::int AS n FROM revisions');
      expect(n?.n).toBe(1);
    });

    it("a deleted deployment's name can be reused; lookup by name prefers the live one", async (ctx) => {
      const { store } = await freshStore(ctx);
      await store.createDeployment(deploymentInput('d-1', 'echo'));
      await store.updateDeployment('d-1', {
        state: 'TERMINATED',
        deleted_at: new Date('2030-01-01T00:00:00Z'),
      });
      const second = await store.createDeployment(deploymentInput('d-2', 'echo'));
      expect((await store.getDeployment('echo'))?.id).toBe('d-2');
      expect((await store.getDeployment('d-1'))?.state).toBe('TERMINATED');

      await store.updateDeployment(second.id, { deleted_at: new Date('2030-02-01T00:00:00Z') });
      expect((await store.getDeployment('echo'))?.id).toBe('d-2');
      expect((await store.listDeployments()).map((d) => d.id)).toEqual([]);
      expect((await store.listDeployments({ includeDeleted: true })).map((d) => d.id)).toEqual([
        'd-1',
        'd-2',
      ]);
    });

    it('stores last_scaled_at (the autoscaling cooldown), leaves it on other updates, clears it with null', async (ctx) => {
      const { store } = await freshStore(ctx);
      const created = await store.createDeployment(deploymentInput('d-s', 'scaled'));
      expect(created.last_scaled_at).toBeNull();
      const at = new Date('2026-01-02T03:04:05.678Z');
      const scaled = await store.updateDeployment('d-s', {
        target_replicas: 3,
        last_scaled_at: at,
      });
      expect(scaled.last_scaled_at).toBe(at.toISOString());
      expect((await store.updateDeployment('d-s', { reason: 'x' })).last_scaled_at).toBe(
        at.toISOString(),
      );
      expect((await store.getDeployment('scaled'))?.last_scaled_at).toBe(at.toISOString());
      expect(
        (await store.updateDeployment('d-s', { last_scaled_at: null })).last_scaled_at,
      ).toBeNull();
    });

    it('lists live deployments oldest first and applies partial updates', async (ctx) => {
      const { store } = await freshStore(ctx);
      for (const i of [1, 2, 3]) await store.createDeployment(deploymentInput(`d-${i}`, `m${i}`));
      expect((await store.listDeployments()).map((d) => d.name)).toEqual(['m1', 'm2', 'm3']);

      await store.addRevision({
        id: 'd-2-r2',
        deployment_id: 'd-2',
        number: 2,
        spec: { v: 2 },
        session,
      });
      const updated = await store.updateDeployment('d-2', {
        target_replicas: 5,
        revision_id: 'd-2-r2',
        spec: { name: 'm2', replicas: 5 },
        state: 'ERROR',
        reason: 'generator failed',
      });
      expect(updated).toMatchObject({
        target_replicas: 5,
        revision_id: 'd-2-r2',
        state: 'ERROR',
        reason: 'generator failed',
        spec: { name: 'm2', replicas: 5 },
      });
      expect((await store.updateDeployment('d-2', { reason: null })).reason).toBeNull();
      expect((await store.updateDeployment('d-2', {})).target_replicas).toBe(5);
      expect((await store.listRevisions('d-2')).map((r) => r.number)).toEqual([1, 2]);
      await expectFlotillaError(store.updateDeployment('missing', { state: 'X' }), 'not_found');
      await expectFlotillaError(
        store.addRevision({ id: 'other', deployment_id: 'd-2', number: 2, spec: {}, session }),
        'conflict',
      );
    });
  });

  describe('actor writes', () => {
    it('inserts at version 0, then updates only at the stored version', async (ctx) => {
      const { store } = await freshStore(ctx);
      expect(await store.writeActors([snapshotWrite('r-1', 'd-1', 0, 'STARTING')])).toEqual({
        conflicts: [],
      });
      expect(await store.writeActors([snapshotWrite('r-1', 'd-1', 1, 'HEALTHY')])).toEqual({
        conflicts: [],
      });
      const [row] = await store.loadSnapshots();
      expect(row).toMatchObject({ actor_id: 'r-1', state: 'HEALTHY', version: 2 });
      expect(row?.snapshot).toMatchObject({ value: 'HEALTHY' });

      // A stale writer and a second creator both lose; their rows are not written.
      const res = await store.writeActors([
        snapshotWrite('r-1', 'd-1', 1, 'UNHEALTHY'),
        snapshotWrite('r-1b', 'd-1', 0, 'STARTING'),
      ]);
      expect(res.conflicts).toEqual(['r-1']);
      expect(await store.writeActors([snapshotWrite('r-1b', 'd-1', 0, 'X')])).toEqual({
        conflicts: ['r-1b'],
      });
      const rows = await store.loadSnapshots();
      expect(rows.map((r) => [r.actor_id, r.state, r.version])).toEqual([
        ['r-1', 'HEALTHY', 2],
        ['r-1b', 'STARTING', 1],
      ]);
      const hist = await store.history({ actorId: 'r-1' });
      expect(hist.items.map((h) => h.to_state)).toEqual(['STARTING', 'HEALTHY']);
      // An update of an actor that was never inserted is a conflict too.
      expect((await store.writeActors([snapshotWrite('ghost', 'd-1', 3, 'X')])).conflicts).toEqual([
        'ghost',
      ]);
    });

    it('a batch sent again after it committed (its answer lost) is no conflict and writes nothing twice', async (ctx) => {
      const { store } = await freshStore(ctx);
      await store.writeActors([snapshotWrite('r-1', 'd-1', 0, 'STARTING')]);
      const batch = [
        snapshotWrite('r-1', 'd-1', 1, 'HEALTHY'),
        snapshotWrite('r-2', 'd-1', 0, 'STARTING'),
        snapshotWrite('r-2', 'd-1', 1, 'HEALTHY'),
      ];
      expect(await store.writeActors(batch)).toEqual({ conflicts: [] });
      // The writer's retry of that batch, exactly as it was: already written, so done.
      expect(await store.writeActors(batch)).toEqual({ conflicts: [] });
      const rows = await store.loadSnapshots();
      expect(rows.map((r) => [r.actor_id, r.state, r.version])).toEqual([
        ['r-1', 'HEALTHY', 2],
        ['r-2', 'HEALTHY', 2],
      ]);
      const all = await store.history({ deploymentId: 'd-1' });
      expect(all.items.map((h) => `${h.actor_id}:${h.to_state}`)).toEqual([
        'r-1:STARTING',
        'r-1:HEALTHY',
        'r-2:STARTING',
        'r-2:HEALTHY',
      ]);
      // The same version with other content is still a conflict, and writes nothing.
      expect(
        (await store.writeActors([snapshotWrite('r-1', 'd-1', 1, 'UNHEALTHY')])).conflicts,
      ).toEqual(['r-1']);
      expect((await store.history({ actorId: 'r-1' })).items).toHaveLength(2);
    });

    it('two writers with the same expected version: exactly one wins', async (ctx) => {
      const { store } = await freshStore(ctx);
      await store.writeActors([snapshotWrite('r-1', 'd-1', 0, 'STARTING')]);
      const results = await Promise.all(
        ['A', 'B', 'C', 'D'].map((s) => store.writeActors([snapshotWrite('r-1', 'd-1', 1, s)])),
      );
      expect(results.filter((r) => r.conflicts.length === 0)).toHaveLength(1);
      const [row] = await store.loadSnapshots();
      expect(row?.version).toBe(2);
      const hist = await store.history({ actorId: 'r-1' });
      expect(hist.items).toHaveLength(2);
      expect(hist.items[1]?.to_state).toBe(row?.state);
    });

    it('coalesces one actor written several times in a batch, keeping every history row', async (ctx) => {
      const { store } = await freshStore(ctx);
      const res = await store.writeActors([
        snapshotWrite('r-1', 'd-1', 0, 'STARTING'),
        snapshotWrite('r-2', 'd-1', 0, 'STARTING'),
        snapshotWrite('r-1', 'd-1', 1, 'HEALTHY'),
        snapshotWrite('r-1', 'd-1', 2, 'UNHEALTHY'),
        snapshotWrite('r-2', 'd-1', 1, 'HEALTHY'),
      ]);
      expect(res.conflicts).toEqual([]);
      const rows = await store.loadSnapshots();
      expect(rows.map((r) => [r.actor_id, r.state, r.version])).toEqual([
        ['r-1', 'UNHEALTHY', 3],
        ['r-2', 'HEALTHY', 2],
      ]);
      const all = await store.history({ deploymentId: 'd-1' });
      expect(all.items.map((h) => `${h.actor_id}:${h.to_state}`)).toEqual([
        'r-1:STARTING',
        'r-2:STARTING',
        'r-1:HEALTHY',
        'r-1:UNHEALTHY',
        'r-2:HEALTHY',
      ]);
      // The version is checked against the FIRST write: a batch starting stale is refused whole.
      const stale = await store.writeActors([
        snapshotWrite('r-1', 'd-1', 2, 'X'),
        snapshotWrite('r-1', 'd-1', 3, 'Y'),
      ]);
      expect(stale.conflicts).toEqual(['r-1']);
      expect((await store.history({ actorId: 'r-1' })).items).toHaveLength(3);
    });

    it('a batch of 1,000 writes takes one round trip and keeps each actor in order', async (ctx) => {
      const { exec } = await freshStore(ctx);
      const counted = counting(exec);
      const store = createStore(counted.exec);
      const actors = 250;
      const steps = ['STARTING', 'HEALTHY', 'UNHEALTHY', 'HEALTHY'];
      const writes: ActorWrite[] = [];
      // Interleaved: step s of every actor before step s + 1 of any.
      steps.forEach((to, s) => {
        for (let a = 0; a < actors; a++) {
          writes.push(
            snapshotWrite(`r-${String(a).padStart(4, '0')}`, `d-${a % 10}`, s, to, {
              transition: {
                from: s === 0 ? null : steps[s - 1]!,
                to,
                event: `step.${s}`,
                reason: null,
                at: new Date(),
              },
              replica: { revisionId: 'rev-1', endpoint: `http://127.0.0.1:${9000 + a}`, info: {} },
            }),
          );
        }
      });
      expect(writes).toHaveLength(1000);
      const before = counted.count();
      expect(await store.writeActors(writes)).toEqual({ conflicts: [] });
      const trips = counted.count() - before;
      console.log(`[store:${adapter.name}] 1,000 actor writes took ${trips} round trip(s)`);
      expect(trips).toBeLessThanOrEqual(3);

      const rows = await store.loadSnapshots();
      expect(rows).toHaveLength(actors);
      expect(rows.every((r) => r.version === steps.length && r.state === 'HEALTHY')).toBe(true);
      const hist = await store.history({ actorId: 'r-0007', limit: 1000 });
      expect(hist.items.map((h) => h.event)).toEqual(['step.0', 'step.1', 'step.2', 'step.3']);
      const all = await store.history({ limit: 1000 });
      expect(all.items).toHaveLength(1000);
      const ids = all.items.map((h) => h.id);
      expect([...ids].sort((x, y) => x - y)).toEqual(ids);
      expect(all.items.map((h) => `${h.actor_id}/${h.event}`)).toEqual(
        writes.map((w) => `${w.actorId}/${w.transition?.event}`),
      );
      const replicas = await store.listReplicas('d-3');
      expect(replicas).toHaveLength(25);
      expect(replicas.every((r) => r.state === 'HEALTHY')).toBe(true);
    });

    it('writes the replica, route and deployment projections with the snapshots', async (ctx) => {
      const { store } = await freshStore(ctx);
      await store.createDeployment(deploymentInput('d-1', 'echo'));
      await store.writeActors([
        {
          ...snapshotWrite('d-1', 'd-1', 0, 'PROVISIONING'),
          kind: 'deployment',
          parentId: null,
          transition: {
            from: 'PENDING',
            to: 'PROVISIONING',
            event: 'deployment.provision',
            reason: 'started',
            at: new Date('2030-01-01T00:00:00Z'),
          },
        },
        snapshotWrite('r-1', 'd-1', 0, 'STARTING', {
          replica: { revisionId: 'd-1-r1', endpoint: 'http://127.0.0.1:9001', info: { pid: 42 } },
        }),
        {
          ...snapshotWrite('rt-1', 'd-1', 0, 'PENDING'),
          kind: 'route',
          route: { replicaId: 'r-1', weight: 2, lastHealth: null, reason: null },
        },
      ]);
      expect(await store.getDeployment('d-1')).toMatchObject({
        state: 'PROVISIONING',
        reason: 'started',
      });
      // State-only writes keep the other projected fields.
      await store.writeActors([
        snapshotWrite('r-1', 'd-1', 1, 'HEALTHY'),
        { ...snapshotWrite('rt-1', 'd-1', 1, 'HEALTHY'), kind: 'route' },
      ]);
      expect(await store.listReplicas('d-1')).toMatchObject([
        {
          id: 'r-1',
          revision_id: 'd-1-r1',
          state: 'HEALTHY',
          endpoint: 'http://127.0.0.1:9001',
          info: { pid: 42 },
        },
      ]);
      await store.writeActors([
        {
          ...snapshotWrite('rt-1', 'd-1', 2, 'DEGRADED'),
          kind: 'route',
          route: {
            replicaId: 'r-1',
            weight: 1.5,
            lastHealth: { status: 'stale', at: '2030-01-01T00:00:00Z' },
            reason: 'no health data',
          },
        },
      ]);
      expect(await store.listRoutes('d-1')).toMatchObject([
        {
          id: 'rt-1',
          replica_id: 'r-1',
          state: 'DEGRADED',
          weight: 1.5,
          last_health: { status: 'stale' },
          reason: 'no health data',
        },
      ]);
      const hist = await store.history({ deploymentId: 'd-1' });
      expect(hist.items[0]).toMatchObject({
        actor_id: 'd-1',
        kind: 'deployment',
        from_state: 'PENDING',
        to_state: 'PROVISIONING',
        event: 'deployment.provision',
        reason: 'started',
        at: '2030-01-01T00:00:00.000Z',
      });
    });

    it('restore reads non-terminal actors parents first and skips terminated deployments', async (ctx) => {
      const { store } = await freshStore(ctx);
      for (const id of ['d-a', 'd-b']) {
        await store.createDeployment(deploymentInput(id, id));
        await store.writeActors([
          { ...snapshotWrite(id, id, 0, 'RUNNING'), kind: 'deployment', parentId: null },
          { ...snapshotWrite(`${id}-route`, id, 0, 'HEALTHY'), kind: 'route' },
          snapshotWrite(`${id}-rep2`, id, 0, 'TERMINATED'),
          snapshotWrite(`${id}-rep1`, id, 0, 'HEALTHY'),
        ]);
      }
      await store.writeActors([
        { ...snapshotWrite('d-b', 'd-b', 1, 'TERMINATED'), kind: 'deployment', parentId: null },
      ]);
      const restore = await store.loadSnapshots({ excludeStates: ['TERMINATED'] });
      expect(restore.map((r) => r.actor_id)).toEqual(['d-a', 'd-a-rep1', 'd-a-route']);
      expect(restore[2]).toMatchObject({ kind: 'route', parent_id: 'd-a', deployment_id: 'd-a' });
      const routes = await store.loadSnapshots({ kinds: ['route'] });
      expect(routes.map((r) => r.actor_id)).toEqual(['d-a-route', 'd-b-route']);
    });

    it('restore can read only the deployment bodies, one deployment, and revisions in one call', async (ctx) => {
      const { store } = await freshStore(ctx);
      for (const id of ['d-a', 'd-b']) {
        await store.createDeployment(deploymentInput(id, id));
        await store.writeActors([
          { ...snapshotWrite(id, id, 0, 'RUNNING'), kind: 'deployment', parentId: null },
          snapshotWrite(`${id}-rep1`, id, 0, 'HEALTHY'),
        ]);
      }
      const light = await store.loadSnapshots({ snapshotKinds: ['deployment'] });
      expect(light.map((r) => [r.actor_id, r.state, r.version])).toEqual([
        ['d-a', 'RUNNING', 1],
        ['d-a-rep1', 'HEALTHY', 1],
        ['d-b', 'RUNNING', 1],
        ['d-b-rep1', 'HEALTHY', 1],
      ]);
      expect(light.map((r) => r.snapshot === null)).toEqual([false, true, false, true]);
      expect(light[0]?.snapshot).toMatchObject({ value: 'RUNNING' });
      const one = await store.loadSnapshots({ deploymentIds: ['d-b'] });
      expect(one.map((r) => r.actor_id)).toEqual(['d-b', 'd-b-rep1']);
      expect(one[1]?.snapshot).toMatchObject({ value: 'HEALTHY' });
      const revs = await store.getRevisions(['d-a-r1', 'd-b-r1', 'missing']);
      expect(revs.map((r) => r.id).sort()).toEqual(['d-a-r1', 'd-b-r1']);
      expect(revs[0]).toEqual(await store.getRevision(revs[0]?.id ?? ''));
      expect(await store.getRevisions([])).toEqual([]);
    });

    it('pages through history with a cursor', async (ctx) => {
      const { store } = await freshStore(ctx);
      const writes = Array.from({ length: 25 }, (_, i) =>
        snapshotWrite(i % 2 === 0 ? 'r-even' : 'r-odd', 'd-1', Math.floor(i / 2), `S${i}`),
      );
      await store.writeActors(writes);
      const seen: string[] = [];
      let after: number | undefined;
      const pages: number[] = [];
      for (;;) {
        const page = await store.history({ deploymentId: 'd-1', limit: 10, after });
        pages.push(page.items.length);
        seen.push(...page.items.map((h) => h.to_state));
        if (page.next === null) break;
        expect(page.next).toBe(page.items[page.items.length - 1]?.id);
        after = page.next;
      }
      expect(pages).toEqual([10, 10, 5]);
      expect(seen).toEqual(writes.map((w) => w.state));
      const odd = await store.history({ actorId: 'r-odd', limit: 100 });
      expect(odd.items).toHaveLength(12);
      expect(odd.next).toBeNull();
      expect((await store.history({ deploymentId: 'other' })).items).toEqual([]);
    });

    it('records events that change no state in the history, in order, without touching snapshots', async (ctx) => {
      const { store } = await freshStore(ctx);
      await store.writeActors([snapshotWrite('route:t1', 'd-1', 0, 'HEALTHY', { kind: 'route' })]);
      const at = new Date('2026-01-01T00:00:00Z');
      await store.recordEvents([
        {
          actorId: 'route:t1',
          kind: 'route',
          deploymentId: 'd-1',
          state: 'HEALTHY',
          event: 'outlier.ejected',
          reason: '5 consecutive errors',
          at,
        },
        {
          actorId: 'route:t1',
          kind: 'route',
          deploymentId: 'd-1',
          state: 'HEALTHY',
          event: 'outlier.returned',
          reason: null,
          at,
        },
      ]);
      const items = (await store.history({ actorId: 'route:t1' })).items;
      expect(items.slice(1).map((h) => [h.from_state, h.to_state, h.event, h.reason])).toEqual([
        ['HEALTHY', 'HEALTHY', 'outlier.ejected', '5 consecutive errors'],
        ['HEALTHY', 'HEALTHY', 'outlier.returned', null],
      ]);
      const [row] = await store.loadSnapshots({ kinds: ['route'] });
      expect(row?.version).toBe(1);
    });
  });

  describe('scaling groups and endpoints', () => {
    it('a scaling group that was never stored has the defaults', async (ctx) => {
      const { store } = await freshStore(ctx);
      expect(await store.getScalingGroup('default')).toEqual({
        name: 'default',
        route_cleanup_target_statuses: ['unhealthy'],
        settings: {},
        updated_at: null,
      });
      const put = await store.putScalingGroup({
        name: 'gpu',
        route_cleanup_target_statuses: ['unhealthy', 'degraded'],
        settings: { max_replicas: 8 },
      });
      expect(put).toMatchObject({
        route_cleanup_target_statuses: ['unhealthy', 'degraded'],
        settings: { max_replicas: 8 },
      });
      expect(await store.getScalingGroup('gpu')).toEqual(put);
      const replaced = await store.putScalingGroup({ name: 'gpu' });
      expect(replaced.route_cleanup_target_statuses).toEqual(['unhealthy']);
      expect(replaced.settings).toEqual({});
    });

    it('endpoints are created, replaced, listed and deleted', async (ctx) => {
      const { store } = await freshStore(ctx);
      expect(await store.getEndpoint('chat')).toBeNull();
      const created = await store.putEndpoint({
        name: 'chat',
        backends: [
          { deployment: 'llama-a', weight: 90 },
          { deployment: 'llama-b', weight: 10 },
        ],
      });
      const replaced = await store.putEndpoint({
        name: 'chat',
        backends: [{ deployment: 'llama-b', weight: 100 }],
      });
      expect(replaced.created_at).toBe(created.created_at);
      expect(await store.getEndpoint('chat')).toEqual(replaced);
      await store.putEndpoint({ name: 'embed', backends: [] });
      expect((await store.listEndpoints()).map((e) => e.name)).toEqual(['chat', 'embed']);
      expect(await store.deleteEndpoint('chat')).toBe(true);
      expect(await store.deleteEndpoint('chat')).toBe(false);
      expect(await store.getEndpoint('chat')).toBeNull();
    });
  });

  describe('adapter behaviour', () => {
    it('turns driver errors into FlotillaErrors in one place', async (ctx) => {
      const { exec, store } = await freshStore(ctx);
      await exec.query("INSERT INTO endpoints (name, backends) VALUES ('e', '[]')");
      const dup = await expectFlotillaError(
        exec.query("INSERT INTO endpoints (name, backends) VALUES ('e', '[]')"),
        'conflict',
      );
      expect(dup.message).toContain('endpoints_pkey');
      expect(dup.details[0]?.path).toBe('endpoints_pkey');
      const bad = await expectFlotillaError(
        exec.query('SELECT $1::int AS n', ['not a number']),
        'validation',
      );
      expect(bad.status).toBe(400);
      // A failed transaction leaves nothing behind.
      await expectFlotillaError(
        exec.transaction(async (tx) => {
          await tx.query("INSERT INTO endpoints (name, backends) VALUES ('f', '[]')");
          await tx.query("INSERT INTO endpoints (name, backends) VALUES ('e', '[]')");
        }),
        'conflict',
      );
      expect(await store.getEndpoint('f')).toBeNull();
      expect(await store.ping()).toBe(true);
      await store.close();
      expect(await store.ping()).toBe(false);
      await expectFlotillaError(store.listEndpoints(), 'store_unavailable');
    });

    it('prints persisted snapshot writes per second for a batch of 4,000', async (ctx) => {
      const { store } = await freshStore(ctx);
      const batch = (v: number) =>
        Array.from({ length: 4000 }, (_, i) =>
          snapshotWrite(`r-${i}`, `d-${i % 100}`, v, `S${v}`, {
            replica: { revisionId: 'rev', endpoint: null, info: {} },
          }),
        );
      await store.writeActors(batch(0)); // inserts; the timed batch updates, as in steady state
      const t0 = performance.now();
      const res = await store.writeActors(batch(1));
      const ms = performance.now() - t0;
      expect(res.conflicts).toEqual([]);
      console.log(
        `[store:${adapter.name}] 4,000 snapshot writes (+ history + projection) in ${ms.toFixed(0)} ms: ${Math.round(4000 / (ms / 1000))} writes/s`,
      );
    });
  });
});

/** The URL an isolated PostgreSQL executor was made from is not kept; ask the server. */
async function isolatedUrlOf(exec: SqlExecutor): Promise<string> {
  const [row] = await exec.query<{ s: string }>('SELECT current_schema() AS s');
  const url = new URL(services().databaseUrl);
  url.searchParams.set('options', `-c search_path=${row!.s}`);
  return url.toString();
}

describe('openStore', () => {
  it('with a DATABASE_URL uses PostgreSQL in the schema its search_path names', async (ctx) => {
    const { url, schema } = await isolatedDatabase(ctx);
    const store = await openStore({ databaseUrl: url, dataDir: '/nonexistent' });
    onTestFinished(() => store.close());
    expect(store.kind).toBe('postgres');
    await store.createDeployment(deploymentInput('d-1', 'echo'));
    const probe = createPostgresExecutor(url);
    onTestFinished(() => probe.close());
    const [row] = await probe.query<{ s: string; n: number }>(
      'SELECT current_schema() AS s, (SELECT count(*)::int FROM deployments) AS n',
    );
    expect(row).toEqual({ s: schema, n: 1 });
  });

  it('without one, the embedded store keeps its data across close and reopen', async () => {
    const dataDir = await tempDir();
    const first = await openStore({ dataDir });
    expect(first.kind).toBe('embedded');
    await first.createDeployment(deploymentInput('d-1', 'echo'));
    await first.writeActors([snapshotWrite('r-1', 'd-1', 0, 'HEALTHY')]);
    await first.putEndpoint({ name: 'chat', backends: [{ deployment: 'echo', weight: 1 }] });
    // A second opener of the same data dir would corrupt it: refused while the first is open.
    await expectFlotillaError(openStore({ dataDir }), 'store_unavailable');
    await first.close();

    const second = await openStore({ dataDir });
    onTestFinished(() => second.close());
    expect((await second.getDeployment('echo'))?.id).toBe('d-1');
    expect((await second.loadSnapshots()).map((r) => [r.actor_id, r.version])).toEqual([
      ['r-1', 1],
    ]);
    expect((await second.history({ actorId: 'r-1' })).items).toHaveLength(1);
    expect(await second.getEndpoint('chat')).not.toBeNull();
    expect((await second.writeActors([snapshotWrite('r-1', 'd-1', 1, 'X')])).conflicts).toEqual([]);
  });
});

describe('embedded store durability', () => {
  it('keeps every committed batch after kill -9 of the process that wrote it', async () => {
    const dataDir = await tempDir();
    const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures/embedded-writer.ts');
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, dataDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    onTestFinished(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let committed = 0;
    let stderr = '';
    let buffer = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffer += chunk;
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) {
        const m = /^committed (\d+)$/.exec(line);
        if (m) committed = Number(m[1]);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    await waitFor(() => committed >= 5 || child.exitCode !== null, {
      timeoutMs: 60_000,
      message: () => `5 committed batches (stderr: ${stderr})`,
    });
    expect(child.exitCode, stderr).toBeNull();
    child.kill('SIGKILL');
    await once(child, 'close');

    // The writer's lock file names a dead pid now; reopening takes it over and recovers.
    const store = await openStore({ dataDir });
    onTestFinished(() => store.close());
    const rows = await store.loadSnapshots();
    expect(rows).toHaveLength(50);
    const version = rows[0]!.version;
    console.log(
      `[store:embedded] killed after ${committed} acknowledged batches; recovered version ${version}`,
    );
    // Every acknowledged batch survived; at most one more committed before its line was read.
    expect(version).toBeGreaterThanOrEqual(committed);
    expect(version).toBeLessThanOrEqual(committed + 1);
    // Batches are atomic: every actor at the same version, with one history row per version.
    expect(rows.every((r) => r.version === version && r.state === `S${version}`)).toBe(true);
    const hist = await store.history({ deploymentId: 'd-1', limit: 1000 });
    expect(hist.items.length).toBe(Math.min(50 * version, 1000));
  });
});
