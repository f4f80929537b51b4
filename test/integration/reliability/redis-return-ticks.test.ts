/**
 * Issue 15, scenario 2: "classification is current again within two ticks of Redis returning"
 * (measured 3.0 s with a 500 ms tick before: ioredis's reconnect backoff had grown to 2 s
 * during the outage, so the prober's writes and the coordinator's reads waited for it).
 *
 * Real Redis on a free port, stopped and started again on the same port by this test; a real
 * prober probing real HTTP endpoints; the coordinator's HealthFeed on a 500 ms ticker as in
 * `serve`. Counted in ticks, not milliseconds: ticks that start after Redis accepts connections
 * again, until one delivers current data (the route whose /health failed during the outage
 * UNHEALTHY, every other route HEALTHY from a check made after the return). Two topologies:
 * a separate prober process's store and a coordinator's store (Redis between them), and
 * all-in-one (one local-first store, prober and feed in the same process).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { routeActorId } from '../../../machines/deployment.ts';
import type { HealthStore } from '../../../src/health/health-store.ts';
import { withLocalResults } from '../../../src/health/local-first-health-store.ts';
import { createProber, type Prober, type ProbeTarget } from '../../../src/health/prober.ts';
import { createRedisHealthStore } from '../../../src/health/redis-health-store.ts';
import { HealthFeed } from '../../../src/runtime/health-feed.ts';
import { freePort } from '../../harness/services.ts';
import { waitFor } from '../../harness/wait.ts';

const TICK_MS = 500;
/** Long enough for a growing reconnect backoff to reach seconds (the fault suite stops it 30 s). */
const OUTAGE_MS = 12_000;
const quiet = { info() {}, warn() {}, error() {} };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => {});
});

/** A redis-server of this test's own on a fixed port, which it stops and starts again. */
async function ownRedis() {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const start = async () => {
    const c = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    child = c;
    await waitFor(
      () =>
        new Promise<boolean>((resolve) => {
          if (c.exitCode !== null) return resolve(false);
          const s = new Socket();
          s.once('connect', () => {
            s.destroy();
            resolve(true);
          });
          s.once('error', () => resolve(false));
          s.connect(port, '127.0.0.1');
        }),
      { timeoutMs: 20_000, message: `redis-server on :${port} accepting connections` },
    );
  };
  const stop = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null) return;
    const exited = once(c, 'exit');
    c.kill('SIGKILL');
    await exited;
  };
  await start();
  cleanups.push(stop);
  return { url: `redis://127.0.0.1:${port}`, start, stop };
}

/** Three routes on one HTTP server; `fail(i)` makes route i's /health answer 503. */
async function endpoints(n: number) {
  const failing = new Set<number>();
  const server: Server = createServer((req, res) => {
    const i = Number(req.url?.split('/')[2]);
    res.writeHead(failing.has(i) ? 503 : 200).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const targets: ProbeTarget[] = Array.from({ length: n }, (_, i) => ({
    routeId: `route-${i}`,
    replicaId: `replica-${i}`,
    url: `http://127.0.0.1:${port}`,
    health: {
      path: `/health/${i}`,
      interval_s: 0.25,
      timeout_s: 1,
      healthy_threshold: 1,
      unhealthy_threshold: 1,
      startup_timeout_s: 30,
    },
  }));
  return { targets, fail: (i: number) => failing.add(i) };
}

interface Delivered {
  kind: string;
  at: number;
}

/** The coordinator's side: a HealthFeed on a ticker; each tick's deliveries kept. */
function feedOn(store: HealthStore, targets: ProbeTarget[]) {
  let current = new Map<string, Delivered>();
  const feed = new HealthFeed({
    health: store,
    maxStalenessS: 30,
    now: Date.now,
    targets: () => targets,
    targetOf: (id) => targets.find((t) => t.routeId === id),
    send: (systemId, event) => {
      if (!event.type.startsWith('route.health.')) return;
      current.set(systemId, { kind: event.type.slice(13), at: event.at as number });
    },
  });
  /** Every tick: what it delivered (empty when its read failed or a tick was still running). */
  const ticks: { startedAt: number; delivered: Map<string, Delivered> }[] = [];
  const timer = setInterval(() => {
    const startedAt = Date.now();
    current = new Map();
    const mine = current;
    const entry = { startedAt, delivered: mine };
    ticks.push(entry);
    feed.classifyNow().catch(() => {});
  }, TICK_MS);
  cleanups.push(() => clearInterval(timer));
  return { ticks };
}

function isCurrent(
  delivered: Map<string, Delivered>,
  targets: ProbeTarget[],
  victim: string,
  since: number,
): boolean {
  return targets.every((t) => {
    const d = delivered.get(routeActorId(t.routeId));
    if (!d || d.at < since) return false;
    return d.kind === (t.routeId === victim ? 'unhealthy' : 'healthy');
  });
}

function startProber(store: HealthStore, targets: ProbeTarget[], id: string): Prober {
  const prober = createProber({ store, proberId: id, targets: () => targets, logger: quiet });
  prober.start();
  cleanups.push(() => prober.stop());
  return prober;
}

describe('Redis returning after an outage', () => {
  it(`classification is current within two ${TICK_MS} ms ticks of Redis accepting connections again (separate prober and coordinator stores; all-in-one local-first)`, async () => {
    const redis = await ownRedis();
    const sep = await endpoints(3);
    const aio = await endpoints(3);

    // Separate: the prober's process and the coordinator's process each have their store.
    const proberStore = createRedisHealthStore({
      url: redis.url,
      keyPrefix: 'ticks-sep:',
      logger: quiet,
    });
    const coordStore = createRedisHealthStore({
      url: redis.url,
      keyPrefix: 'ticks-sep:',
      logger: quiet,
    });
    // All-in-one: one process, its prober's results kept locally first.
    const aioStore = withLocalResults(
      createRedisHealthStore({ url: redis.url, keyPrefix: 'ticks-aio:', logger: quiet }),
      { logger: quiet },
    );
    cleanups.push(
      () => proberStore.close(),
      () => coordStore.close(),
      () => aioStore.close(),
    );

    startProber(proberStore, sep.targets, 'prober-sep');
    startProber(aioStore, aio.targets, 'prober-aio');
    const sepFeed = feedOn(coordStore, sep.targets);
    const aioFeed = feedOn(aioStore, aio.targets);
    const everyHealthy = (f: typeof sepFeed, targets: ProbeTarget[]) =>
      f.ticks.some((t) => isCurrent(t.delivered, targets, 'none', 0));
    await waitFor(() => everyHealthy(sepFeed, sep.targets) && everyHealthy(aioFeed, aio.targets), {
      timeoutMs: 30_000,
      message: 'every route HEALTHY through both feeds before the outage',
    });

    await redis.stop();
    // Route 0 of each topology starts failing its health check while Redis is down.
    sep.fail(0);
    aio.fail(0);
    await new Promise((r) => setTimeout(r, OUTAGE_MS)); // the outage itself, not a synchronisation
    await redis.start();
    const returnedAt = Date.now();

    const ticksUntilCurrent = async (f: typeof sepFeed, targets: ProbeTarget[]) => {
      const first = f.ticks.length;
      const found = await waitFor(
        () => {
          const after = f.ticks.slice(first).filter((t) => t.startedAt >= returnedAt);
          const i = after.findIndex((t) => isCurrent(t.delivered, targets, 'route-0', returnedAt));
          return i >= 0 ? { n: i + 1 } : null;
        },
        { timeoutMs: 30_000, message: 'classification current after Redis returned' },
      );
      return found.n;
    };
    const [sepTicks, aioTicks] = await Promise.all([
      ticksUntilCurrent(sepFeed, sep.targets),
      ticksUntilCurrent(aioFeed, aio.targets),
    ]);
    console.log(
      `[redis-return-ticks] classification current at tick ${sepTicks} (separate) and ${aioTicks} (all-in-one) after Redis returned`,
    );
    expect(sepTicks).toBeLessThanOrEqual(2);
    expect(aioTicks).toBeLessThanOrEqual(2);
  }, 90_000);
});
