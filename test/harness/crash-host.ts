/**
 * A process that hosts a Runtime for the crash tests. It restores from the store, records what
 * restore produced, then runs a seeded random workload (create, scale, delete, healthy probe
 * results) until it is killed (SIGKILL) or stopped (SIGTERM: a clean close). Replicas are the
 * FakeBackend's, logged to a file so they outlive this process like real replicas do.
 *
 * stdout: JSON lines {"restored": {...}} once, then {"op": ...} per operation.
 */
import { writeFileSync } from 'node:fs';
import { createMemoryHealthStore } from '../../src/health/memory-health-store.ts';
import { Runtime } from '../../src/runtime/runtime.ts';
import { openStore } from '../../src/store/store.ts';
import { FakeBackend } from './fake-backend.ts';
import { echoCommand, reportAll } from './runtime-fixture.ts';

const env = process.env;
const seed = Number(env.CRASH_SEED ?? 1);
const mode = env.CRASH_MODE ?? 'work'; // work | settle

function mulberry32(a: number) {
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = mulberry32(seed);
const pick = <T>(xs: T[]): T | undefined => xs[Math.floor(rand() * xs.length)];

const store = await openStore({
  databaseUrl: env.CRASH_DATABASE_URL || undefined,
  dataDir: env.CRASH_DATA_DIR!,
});
const backend = new FakeBackend({ logFile: env.CRASH_BACKEND_LOG! });
const health = createMemoryHealthStore();
const runtime = new Runtime({
  store,
  backend,
  health,
  config: {
    shards: 3,
    healthCheckIntervalS: 3600,
    evictionIntervalS: 3600,
    flushDelayMs: 1,
    deploymentDefaults: { drain_timeout_s: 1, terminate_timeout_s: 1 },
  },
});
// What PostgreSQL holds before restore, to compare with what restore produces.
const persisted = Object.fromEntries(
  (await store.loadSnapshots({ excludeStates: ['TERMINATED'] })).map((r) => [r.actor_id, r.state]),
);
await runtime.start();
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
out({ restored: Object.fromEntries(runtime.restoredStates), persisted });

let stopping = false;
// A clean stop: finish the operation under way, then close (flushes every transition).
process.on('SIGTERM', () => {
  stopping = true;
});

async function healthy() {
  await reportAll(runtime, health, true);
}

if (mode === 'settle') {
  // No new operations: let every deployment converge, then report and exit.
  const deadline = Date.now() + 30_000;
  for (;;) {
    await healthy();
    const views = await runtime.list();
    const settled = views.every((v) => {
      if (v.state === 'TERMINATED' || v.state === 'ERROR') return true;
      if (v.state === 'DESTROYING') return false;
      return (
        v.replicas.length === v.target_replicas &&
        v.replicas.every((r) => r.state === 'HEALTHY') &&
        (v.target_replicas === 0 || v.state === 'RUNNING')
      );
    });
    if (settled || Date.now() > deadline) {
      const live = views.filter((v) => v.state !== 'TERMINATED');
      writeFileSync(
        env.CRASH_RESULT!,
        JSON.stringify({
          settled,
          deployments: views.map((v) => ({
            id: v.id,
            name: v.name,
            state: v.state,
            target: v.target_replicas,
            replicas: v.replicas.map((r) => ({ id: r.id, state: r.state })),
          })),
          liveReplicaIds: live.flatMap((v) => v.replicas.map((r) => r.id)),
          backendLive: [...backend.live.keys()],
        }),
      );
      await runtime.close({ stopReplicas: false });
      await store.close();
      process.exit(0);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

let n = Number(env.CRASH_NAME_BASE ?? 0);
while (!stopping) {
  const views = await runtime.list();
  const live = views.filter((v) => ['PENDING', 'PROVISIONING', 'RUNNING'].includes(v.state));
  const r = rand();
  try {
    if (r < 0.25 && live.length < 4) {
      const name = `d${seed}-${n++}`;
      out({ op: 'create', name });
      await runtime.createDeployment(echoCommand(name, 1 + Math.floor(rand() * 3)));
    } else if (r < 0.55 && live.length > 0) {
      const d = pick(live)!;
      const replicas = Math.floor(rand() * 5);
      out({ op: 'scale', name: d.name, replicas });
      await runtime.scale(d.id, replicas);
    } else if (r < 0.65 && live.length > 0) {
      const d = pick(live)!;
      out({ op: 'delete', name: d.name });
      await runtime.destroy(d.id);
    } else {
      await healthy();
    }
  } catch (err) {
    out({ op: 'error', message: String(err) });
  }
  await new Promise((res) => setTimeout(res, 5 + Math.floor(rand() * 20)));
}
await runtime.close({ stopReplicas: false });
await store.close();
process.exit(0);
