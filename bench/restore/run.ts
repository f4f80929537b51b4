/**
 * bench/restore: a fleet of 1,000 deployments x 4 replicas (9,000 actors with routes) on real
 * PostgreSQL. Prints transitions persisted per second, snapshot bytes per actor, restore time
 * and memory per actor, each with a baseline measured in the same run:
 *   - persistence: batched writes (SnapshotWriter) vs one transaction per transition;
 *   - restore: the sharded tree vs a flat tree (1 shard: every deployment under one parent).
 *
 *   npx tsx --expose-gc bench/restore/run.ts            (DATABASE_URL, default local postgres)
 *   BENCH_DEPLOYMENTS=200 npx tsx bench/restore/run.ts  (a smaller fleet)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemoryHealthStore } from '../../src/health/memory-health-store.ts';
import { Runtime } from '../../src/runtime/runtime.ts';
import { type ActorWrite, openStore, type Store } from '../../src/store/store.ts';
import { FakeBackend } from '../../test/harness/fake-backend.ts';
import { echoCommand, reportAll } from '../../test/harness/runtime-fixture.ts';
import { baseUrl, gc, heapMb, withSchema } from '../shared/postgres.ts';

const DEPLOYMENTS = Number(process.env.BENCH_DEPLOYMENTS ?? 1000);
const REPLICAS = 4;
function runtimeOn(store: Store, backend: FakeBackend, shards: number) {
  const health = createMemoryHealthStore();
  const runtime = new Runtime({
    store,
    backend,
    health,
    config: { shards, healthCheckIntervalS: 3600, evictionIntervalS: 3600 },
  });
  return { runtime, health };
}

async function buildFleet(store: Store, backend: FakeBackend) {
  const { runtime, health } = runtimeOn(store, backend, Math.ceil(Math.sqrt(DEPLOYMENTS)));
  await runtime.start();
  const t0 = performance.now();
  const writes0 = runtime.writer.stats.writes;
  for (let i = 0; i < DEPLOYMENTS; i++) {
    await runtime.createDeployment(echoCommand(`bench-${i}`, REPLICAS));
  }
  await runtime.writer.flush();
  const elapsed = (performance.now() - t0) / 1000;
  const writes = runtime.writer.stats.writes - writes0;
  // Everything to HEALTHY / RUNNING, as probes would: a burst of transitions.
  const t1 = performance.now();
  const writes1 = runtime.writer.stats.writes;
  for (let round = 0; round < 3; round++) {
    await reportAll(runtime, health);
    await runtime.writer.flush();
  }
  const burstS = (performance.now() - t1) / 1000;
  const burstWrites = runtime.writer.stats.writes - writes1;
  const running = (await runtime.list()).filter((v) => v.state === 'RUNNING').length;
  const actors = runtime.actorCount();
  await runtime.close();
  return { elapsed, writes, running, actors, burstS, burstWrites };
}

async function unbatchedBaseline(store: Store, n: number) {
  const writes: ActorWrite[] = [];
  for (let i = 0; i < n; i++) {
    writes.push({
      actorId: `baseline:${i}`,
      kind: 'replica',
      deploymentId: 'baseline',
      parentId: null,
      state: 'STARTING',
      snapshot: { value: 'STARTING', context: { i } },
      expectedVersion: 0,
      transition: { from: null, to: 'STARTING', event: 'transition', reason: null, at: new Date() },
    });
  }
  const t0 = performance.now();
  for (const w of writes) await store.writeActors([w]);
  const oneByOne = n / ((performance.now() - t0) / 1000);
  const batched = writes.map((w) => ({
    ...w,
    actorId: `${w.actorId}:b`,
  }));
  const t1 = performance.now();
  for (let i = 0; i < batched.length; i += 500) await store.writeActors(batched.slice(i, i + 500));
  const inBatches = n / ((performance.now() - t1) / 1000);
  return { oneByOne, inBatches };
}

async function measureRestore(store: Store, backend: FakeBackend, shards: number) {
  const before = heapMb();
  const { runtime } = runtimeOn(store, backend, shards);
  const t0 = performance.now();
  const { restoredDeployments } = await runtime.start();
  const ms = performance.now() - t0;
  const actors = runtime.actorCount();
  const after = heapMb();
  const stopT0 = performance.now();
  await runtime.close();
  const stopMs = performance.now() - stopT0;
  return {
    ms,
    restoredDeployments,
    actors,
    kbPerActor: ((after - before) * 1024) / actors,
    stopMs,
  };
}

async function main() {
  console.log(
    `bench/restore: ${DEPLOYMENTS} deployments x ${REPLICAS} replicas (+ routes), PostgreSQL ${baseUrl.replace(/\/\/.*@/, '//')}`,
  );
  if (!gc) console.log('(run with --expose-gc for stable memory figures)');
  await withSchema(`bench_restore_${process.pid}`, async (url) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-bench-'));
    const store = await openStore({ databaseUrl: url, dataDir });
    const backend = new FakeBackend();
    try {
      const fleet = await buildFleet(store, backend);
      const rate = fleet.burstWrites / fleet.burstS;
      console.log(
        `fleet built: ${DEPLOYMENTS} deployments created one API call at a time (${fleet.writes} writes in ${fleet.elapsed.toFixed(2)} s); ` +
          `health burst: ${fleet.burstWrites} writes in ${fleet.burstS.toFixed(2)} s; ${fleet.running}/${DEPLOYMENTS} RUNNING, ${fleet.actors} actors`,
      );

      const rows = await store.loadSnapshots({ excludeStates: ['TERMINATED'] });
      const deploymentBytes = rows
        .filter((r) => r.kind === 'deployment')
        .reduce((n, r) => n + Buffer.byteLength(JSON.stringify(r.snapshot)), 0);
      const leafRows = rows.filter((r) => r.kind !== 'deployment');
      const leafBytes = leafRows.reduce(
        (n, r) => n + Buffer.byteLength(JSON.stringify(r.snapshot)),
        0,
      );

      const base = await unbatchedBaseline(store, 2000);
      const sharded = await measureRestore(store, backend, Math.ceil(Math.sqrt(DEPLOYMENTS)));
      const flat = await measureRestore(store, backend, 1);

      const table = [
        [
          'transitions persisted/s (runtime, health burst)',
          rate.toFixed(0),
          'classify -> actors -> PostgreSQL',
        ],
        ['  store writes/s, batches of 500', base.inBatches.toFixed(0), ''],
        [
          '  baseline: one transaction per transition',
          base.oneByOne.toFixed(0),
          `batched ${(base.inBatches / base.oneByOne).toFixed(1)}x`,
        ],
        [
          'deployment subtree snapshot, bytes per actor',
          (deploymentBytes / fleet.actors).toFixed(0),
          `${(deploymentBytes / DEPLOYMENTS / 1024).toFixed(1)} KB per deployment`,
        ],
        [
          'leaf snapshot row (replica/route), bytes',
          (leafBytes / Math.max(1, leafRows.length)).toFixed(0),
          '',
        ],
        [
          'restore, sharded tree (ms)',
          sharded.ms.toFixed(0),
          `${sharded.restoredDeployments} deployments, ${sharded.actors} actors`,
        ],
        [
          '  baseline: flat tree, 1 shard (ms)',
          flat.ms.toFixed(0),
          `sharded ${(flat.ms / sharded.ms).toFixed(2)}x faster`,
        ],
        [
          'stop whole tree, sharded / flat (ms)',
          `${sharded.stopMs.toFixed(0)} / ${flat.stopMs.toFixed(0)}`,
          `${(flat.stopMs / sharded.stopMs).toFixed(1)}x`,
        ],
        [
          'JS heap per actor after restore (KB)',
          sharded.kbPerActor.toFixed(2),
          gc ? '' : '(no --expose-gc: rough)',
        ],
      ];
      const w = Math.max(...table.map((r) => r[0]!.length));
      for (const [k, v, note] of table) console.log(`${k!.padEnd(w)}  ${v!.padStart(8)}  ${note}`);
      console.log(
        `aims: restore < 3000 ms (${sharded.ms < 3000 ? 'met' : 'MISSED'}), >= 5000 transitions/s persisted (${rate >= 5000 ? 'met' : 'MISSED'}: ${rate.toFixed(0)}/s)`,
      );
    } finally {
      await store.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
}

await main();
