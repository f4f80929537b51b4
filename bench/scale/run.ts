/**
 * bench/scale: what one change costs as the fleet grows, on real PostgreSQL with the fake
 * backend (no process starts). Creates deployments one at a time (4 replicas each) with the
 * in-process proxy's routing state following every published table, as `createFlotilla` does,
 * and prints:
 *   - create latency around the 100th, 1,000th and 5,000th deployment, and the ratio
 *     5,000th / 100th (flat is 1; the aim is <= 2);
 *   - restore (start from the rows) and close of the whole runtime at 1,000, 5,000 and 10,000
 *     deployments, with close(10k)/close(1k) against the linear ideal (10);
 *   - heap per actor after restore (run with --expose-gc);
 *   - at the largest size, a restore after every deadline expired (the clock moved past them, as
 *     when the coordinator was down longer than the startup timeout): the start's duration,
 *     then how long the expired deadlines take to work through after it and the worst
 *     event-loop delay meanwhile (they fire in batches after the restore, not inside it).
 * The fleet stays steady while it is built: the startup and provisioning timeouts are a day,
 * so no replica times out and churns while 10,000 deployments are created (the fake backend
 * runs no health checks, so every replica stays STARTING with its deadline pending).
 * Every deployment is created through the runtime, one at a time (about 10 ms each on this
 * machine kind, so 10,000 in under 3 minutes when quiet); no rows are bulk-seeded.
 * The baseline is main before this change, measured earlier on this machine kind (same
 * workload): it is printed in the header, since the old implementation is not in this tree.
 *
 *   npx tsx --expose-gc bench/scale/run.ts                 (DATABASE_URL, default local postgres)
 *   BENCH_SCALE_SIZES=200,500,1000 BENCH_SCALE_LATENCY_AT=100,1000 npm run bench:scale  (smaller)
 *   BENCH_SCALE_PROFILE=/tmp/prof ...   also writes CPU profiles of each restore and close there,
 *                                       and of the expired deadlines worked through
 * The same file runs unchanged in a checkout of main (same Runtime API): run it there for a
 * same-machine baseline.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createMemoryHealthStore } from '../../src/health/memory-health-store.ts';
import { OutlierDetector } from '../../src/proxy/outlier-detector.ts';
import { createProxyMetrics } from '../../src/proxy/proxy-metrics.ts';
import { RoutingState, type Upstream } from '../../src/proxy/routing-state.ts';
import { Runtime } from '../../src/runtime/runtime.ts';
import type { Clock } from '../../src/runtime/system-clock.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { FakeBackend } from '../../test/harness/fake-backend.ts';
import { echoCommand } from '../../test/harness/runtime-fixture.ts';
import { baseUrl, heapMb, withSchema } from '../shared/postgres.ts';

const SIZES = (process.env.BENCH_SCALE_SIZES ?? '1000,5000,10000')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => n > 0)
  .sort((a, b) => a - b);
const REPLICAS = 4;
const LATENCY_AT = (process.env.BENCH_SCALE_LATENCY_AT ?? '100,1000,5000')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => n > 0 && n <= (SIZES.at(-1) ?? 0));
/** Creates averaged around each latency point (the n-WINDOW+1th .. nth). */
const WINDOW = 20;
const PROFILE_DIR = process.env.BENCH_SCALE_PROFILE;
/** Startup and provisioning timeouts: long enough that nothing expires while the fleet is built. */
const TIMEOUT_S = 86_400;
/** How far the clock jumps for the expired-deadline restore: past every deadline above. */
const SKEW_MS = 2 * TIMEOUT_S * 1000;

/** Runs `fn`, with a CPU profile of it written to BENCH_SCALE_PROFILE/<name>.cpuprofile if set. */
async function profiled<T>(name: string, fn: () => Promise<T>): Promise<T> {
  if (!PROFILE_DIR) return fn();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  try {
    return await fn();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(join(PROFILE_DIR, `${name}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  }
}

/**
 * The writer's flush, tried again when PostgreSQL is slow to answer (a loaded machine): the
 * runtime itself retries a failed flush, so a bench that gave up here would measure nothing.
 */
async function flushed(runtime: Runtime): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await runtime.writer.flush();
    } catch (err) {
      if (attempt >= 10) throw err;
      console.log(`(flush failed, attempt ${attempt}: ${(err as Error).message}; retrying)`);
    }
  }
}

/**
 * Starts (restores) a new runtime from `make`, timed. A start whose whole-fleet read PostgreSQL
 * did not answer in time (a loaded machine) is closed and tried again with a new runtime; the
 * figures are the successful attempt's.
 */
async function started(name: string, make: () => ReturnType<typeof runtimeOn>) {
  for (let attempt = 1; ; attempt++) {
    const made = make();
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    try {
      await profiled(name, () => made.runtime.start());
      return { ...made, ms: performance.now() - t0, cpuMs: cpuMs(c0) };
    } catch (err) {
      if (attempt >= 5) throw err;
      console.log(`(${name} failed, attempt ${attempt}: ${(err as Error).message}; retrying)`);
      await made.runtime.close().catch(() => {});
    }
  }
}

/** A runtime with the in-process proxy's routing state following its tables. */
function runtimeOn(store: Store, backend: FakeBackend, expected: number, skewMs = 0) {
  const clock: Clock = {
    now: () => Date.now() + skewMs,
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
  };
  const runtime = new Runtime({
    store,
    backend,
    clock,
    health: createMemoryHealthStore(),
    config: {
      shards: Math.ceil(Math.sqrt(expected)),
      healthCheckIntervalS: 3600,
      evictionIntervalS: 3600,
      deploymentDefaults: { provision_timeout_s: TIMEOUT_S },
    },
  });
  const outliers = new OutlierDetector<Upstream>(undefined, {
    peers: (u) => u.deployment.targets,
    ejected: () => {},
    returned: () => {},
  });
  const proxy = new RoutingState({
    random: Math.random,
    metrics: createProxyMetrics(() => []),
    outliers,
    warn: () => {},
  });
  runtime.onRoutingTable((t) => proxy.apply(t));
  return { runtime, proxy };
}

/** The bench's deployment: echoCommand's, with a startup timeout nothing reaches while building. */
function command(name: string) {
  const cmd = echoCommand(name, REPLICAS);
  const health = { ...cmd.revision.health_check, startup_timeout_s: TIMEOUT_S };
  return { ...cmd, revision: { ...cmd.revision, health_check: health } };
}

/** Replicas of the live tree in STARTING (of `among`, when given). */
function starting(runtime: Runtime, among?: Set<string>): Set<string> {
  const out = new Set<string>();
  for (const [id, state] of runtime.actorStates()) {
    if (id.startsWith('replica:') && state === 'STARTING' && (!among || among.has(id))) out.add(id);
  }
  return out;
}

/** CPU ms this process spent (user + system) since `from`: less load-dependent than wall time. */
const cpuMs = (from: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(from);
  return (u.user + u.system) / 1000;
};

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

async function main() {
  console.log(
    `bench/scale: deployments x ${REPLICAS} replicas, fake backend, PostgreSQL ${baseUrl.replace(/\/\/.*@/, '//')}; checkpoints ${SIZES.join(', ')}`,
  );
  console.log(
    'main (measured earlier, same workload on PostgreSQL): create ~7 ms at 100 deployments, 430-470 ms at 4,500 (ratio ~60x); ' +
      'restore of 10,000 x 4: 5.7 s; close of 10,000 x 4: 2.5 s, 18x the 1,000 figure; heap 3.8 KB per actor',
  );
  if (!gc) console.log('(run with --expose-gc for stable memory figures)');
  await withSchema(`bench_scale_${process.pid}`, async (url) => {
    const store = await openStore({
      databaseUrl: url,
      dataDir: mkdtempSync(join(tmpdir(), 'flotilla-scale-')),
      // Whole-fleet reads of 10,000 deployments on a loaded machine outlast the defaults; the
      // bench measures the runtime, not the store's time limits.
      postgresTimeouts: { acquireMs: 10_000, queryMs: 10_000, transactionQueryMs: 120_000 },
    });
    const backend = new FakeBackend();
    const last = SIZES.at(-1) ?? 0;
    let { runtime, proxy } = runtimeOn(store, backend, last);
    await runtime.start();
    const latencies: number[] = [];
    const checkpoints: Array<{
      n: number;
      closeMs: number;
      restoreMs: number;
      closeCpuMs: number;
      restoreCpuMs: number;
      actors: number;
      kbPerActor: number;
    }> = [];
    let created = 0;
    for (const size of SIZES) {
      while (created < size) {
        const t0 = performance.now();
        await runtime.createDeployment(command(`s-${created}`));
        latencies.push(performance.now() - t0);
        created++;
        if (LATENCY_AT.includes(created)) {
          const ms = median(latencies.slice(-WINDOW));
          console.log(`create #${created}: ${ms.toFixed(2)} ms (median of the last ${WINDOW})`);
        }
      }
      await flushed(runtime);
      // Let the burst of transitions of the last creates settle before measuring the tree.
      await new Promise((r) => setTimeout(r, 200));
      await flushed(runtime);
      const deployments = proxy.version > 0 ? [...proxy.allDeployments()].length : 0;
      const c0 = performance.now();
      const cc0 = process.cpuUsage();
      await profiled(`close-${size}`, () => runtime.close());
      const closeMs = performance.now() - c0;
      const closeCpuMs = cpuMs(cc0);
      const before = heapMb();
      const restored = await started(`restore-${size}`, () => runtimeOn(store, backend, last));
      ({ runtime, proxy } = restored);
      const { ms: restoreMs, cpuMs: restoreCpuMs } = restored;
      const actors = runtime.actorCount();
      const kbPerActor = ((heapMb() - before) * 1024) / Math.max(1, actors);
      checkpoints.push({
        n: size,
        closeMs,
        restoreMs,
        closeCpuMs,
        restoreCpuMs,
        actors,
        kbPerActor,
      });
      console.log(
        `${size} deployments (${actors} actors; proxy had ${deployments}): close ${closeMs.toFixed(0)} ms (cpu ${closeCpuMs.toFixed(0)} ms), restore ${restoreMs.toFixed(0)} ms (cpu ${restoreCpuMs.toFixed(0)} ms), heap ${kbPerActor.toFixed(2)} KB/actor`,
      );
    }
    // Restore after every deadline expired: all replicas are STARTING past their startup deadline.
    await flushed(runtime);
    await runtime.close();
    const late = await started(`restore-expired-${last}`, () =>
      runtimeOn(store, backend, last, SKEW_MS),
    );
    runtime = late.runtime;
    const { ms: expiredStartMs, cpuMs: expiredStartCpuMs } = late;
    // Those are the replicas whose expired deadline is still to fire (new replicas that retried
    // provisionings spawn meanwhile are not counted).
    const expired = starting(runtime);
    // Followed through the change feed rather than by polling every actor's state: a poll of
    // 40,000 actors every 100 ms was a large part of the CPU this figure is meant to show.
    const waiting = new Set(expired);
    const unsubscribe = runtime.onChange((e) => {
      if (e.kind === 'replica' && e.to !== 'STARTING') waiting.delete(e.actor_id);
    });
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    const d0 = performance.now();
    const dc0 = process.cpuUsage();
    const drainDeadline = d0 + 30 * 60_000;
    await profiled(`expired-${last}`, async () => {
      while (waiting.size > 0 && performance.now() < drainDeadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
    });
    const drainMs = performance.now() - d0;
    const drainCpuMs = cpuMs(dc0);
    lag.disable();
    unsubscribe();
    const left = starting(runtime, expired).size;
    console.log(
      `${last} deployments, restored with every deadline expired: start ${expiredStartMs.toFixed(0)} ms (cpu ${expiredStartCpuMs.toFixed(0)} ms); ` +
        `${expired.size} replicas past their startup deadline at the end of start, ${left} after ${(drainMs / 1000).toFixed(1)} s (cpu ${(drainCpuMs / 1000).toFixed(1)} s); ` +
        `event-loop delay meanwhile max ${(lag.max / 1e6).toFixed(0)} ms, p99 ${(lag.percentile(99) / 1e6).toFixed(0)} ms`,
    );
    await flushed(runtime).catch(() => {});
    await runtime.close();

    console.log('\nsummary');
    const at = (n: number) => median(latencies.slice(Math.max(0, n - WINDOW), n));
    if (LATENCY_AT.length >= 2) {
      const first = LATENCY_AT[0] as number;
      const lastAt = LATENCY_AT.at(-1) as number;
      console.log(
        `create #${lastAt} / #${first}: ${(at(lastAt) / at(first)).toFixed(2)}x (flat = 1, aim <= 2; main ~60x for #4,500 / #100)`,
      );
      for (const n of LATENCY_AT) console.log(`  create #${n}: ${at(n).toFixed(2)} ms`);
    }
    const small = checkpoints[0];
    const big = checkpoints.at(-1);
    if (small && big && big !== small) {
      const ideal = big.n / small.n;
      console.log(
        `close ${big.n} / ${small.n}: ${(big.closeMs / small.closeMs).toFixed(1)}x (linear = ${ideal}x; main 18x for 10x); cpu ${(big.closeCpuMs / small.closeCpuMs).toFixed(1)}x`,
      );
      console.log(
        `restore ${big.n} / ${small.n}: ${(big.restoreMs / small.restoreMs).toFixed(1)}x (linear = ${ideal}x; cpu ${(big.restoreCpuMs / small.restoreCpuMs).toFixed(1)}x); restore of ${big.n}: ${(big.restoreMs / 1000).toFixed(2)} s (aim for 10,000: <= 3 s; main 5.7 s)`,
      );
    }
    await store.close();
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
