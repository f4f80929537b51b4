/**
 * Scenario 2: Redis stopped under traffic (30 s in the full run), then started again.
 * Checked: routes that were HEALTHY keep receiving traffic (fail static) and none is evicted
 * for lack of data; once Redis is back, classification is current within two ticks (a replica
 * made to fail its health check during the outage is classified UNHEALTHY, and every other
 * route carries a health record newer than Redis's return). Reported: failed requests during
 * the outage, and how long classification took to catch up.
 * All-in-one, the in-process prober's results reach classification without Redis, so the
 * failing replica leaves rotation during the outage and may already have been replaced when
 * Redis returns (or restarted, healthy again): its route gone or terminating, or its replica
 * restarted and its route checked after the return, counts as current; its removal is not an
 * eviction for lack of data.
 */
import type { Topology } from '../lib/cluster.ts';
import type { Context, Scenario } from '../lib/context.ts';
import { emptyFigures, type Figures, percentile } from '../lib/figures.ts';
import { until } from '../lib/http.ts';
import type { Rng } from '../lib/prng.ts';
import {
  type Bed,
  exitedProcesses,
  HEALTH_INTERVAL_S,
  outageVariants,
  setHealth,
  sleep,
  trafficTotals,
  waitSettled,
} from '../lib/setup.ts';

async function variant(
  ctx: Context,
  f: Figures,
  bed: Bed,
  rand: Rng,
  topology: Topology,
): Promise<void> {
  const { cluster: c, traffic } = bed;
  const catchUp: number[] = [];
  for (let i = 0; i < ctx.runs; i++) {
    const before = await waitSettled(c, 120_000);
    const healthy = new Map(before.flatMap((v) => v.routes.map((r) => [r.id, v.name] as const)));
    const victimDeployment = rand.pick(before);
    const victim = rand.pick(victimDeployment.replicas);
    const victimRoute = victimDeployment.routes.find((r) => r.replica_id === victim.id)!;
    const from = performance.now();
    await bed.redis.stop();
    f.faultsInjected++;
    ctx.log(
      `  ${topology} outage ${i + 1}: Redis stopped; ${victim.id} of ${victimDeployment.name} fails /health from a seeded point`,
    );
    const flipAt = from + rand.int(1_000, Math.max(1_500, ctx.outageMs / 2));
    let flipped = false;
    let evicted: string[] = [];
    while (performance.now() - from < ctx.outageMs) {
      if (!flipped && performance.now() >= flipAt) {
        await setHealth(victim.endpoint!, false);
        flipped = true;
      }
      const vs = await c.list(undefined);
      if (vs) {
        const now = new Map(vs.flatMap((v) => v.routes.map((r) => [r.id, r.state] as const)));
        evicted = [...healthy.keys()].filter(
          (id) =>
            id !== victimRoute.id &&
            (!now.has(id) || now.get(id) === 'TERMINATED' || now.get(id) === 'TERMINATING'),
        );
        if (evicted.length) break;
      }
      await sleep(250);
    }
    if (!flipped) await setHealth(victim.endpoint!, false);
    for (const id of evicted)
      f.violations.push(
        `outage ${i + 1}: route ${id} of ${healthy.get(id)} evicted while Redis was down`,
      );
    await bed.redis.start();
    const backAt = performance.now();
    const w = traffic.window(from, backAt);
    f.windowSent += w.sent;
    f.windowFailed += w.failed;
    // Classification current again: the victim's route UNHEALTHY, every other route's health newer than the return.
    const backWall = Date.now();
    let lastSeen = 'no answer from the API';
    try {
      await until(
        async () => {
          const vs = await c.list();
          if (!vs) return false;
          const routes = vs.flatMap((v) => v.routes);
          lastSeen = routes
            .map(
              (r) =>
                `${r.id === victimRoute.id ? 'victim ' : ''}${r.id.slice(-3)} ${r.state} ${r.last_health ? `${r.last_health.class}@${Date.parse(r.last_health.at) - backWall}ms` : 'no health'}`,
            )
            .join(', ');
          const vr = routes.find((r) => r.id === victimRoute.id);
          const vrep = vs.flatMap((v) => v.replicas).find((r) => r.id === victim.id);
          // Out of rotation: UNHEALTHY, or (all-in-one, seen during the outage) already
          // being replaced, or restarted and checked again since the return.
          const out =
            !vr ||
            vr.state === 'UNHEALTHY' ||
            vr.state === 'TERMINATING' ||
            vr.state === 'TERMINATED' ||
            ((vrep?.restarts ?? 0) > victim.restarts &&
              !!vr.last_health &&
              Date.parse(vr.last_health.at) >= backWall);
          if (!out) return false;
          return routes
            .filter(
              (r) =>
                r.id !== victimRoute.id && r.state !== 'TERMINATED' && r.state !== 'TERMINATING',
            )
            .every((r) => r.last_health && Date.parse(r.last_health.at) >= backWall);
        },
        60_000,
        'classification current after Redis returned',
        50,
      );
      const ms = performance.now() - backAt;
      catchUp.push(ms);
      f.recoverMs.push(ms);
      if (ms > 2 * HEALTH_INTERVAL_S * 1000 + 500) {
        f.violations.push(
          `outage ${i + 1}: classification current ${Math.round(ms)} ms after Redis returned (two ticks: ${2 * HEALTH_INTERVAL_S * 1000} ms, plus one 500 ms probe interval)`,
        );
      }
    } catch (err) {
      f.violations.push(
        `outage ${i + 1}: ${(err as Error).message}; last seen (health time relative to the return): ${lastSeen}`,
      );
    }
    await setHealth(victim.endpoint!, true).catch(() => {});
    ctx.log(
      `  ${topology} outage ${i + 1}: ${w.failed} of ${w.sent} requests failed during it; classification current ${Math.round(catchUp.at(-1) ?? Number.NaN)} ms after Redis returned`,
    );
  }
  await waitSettled(c, 120_000).catch((err) =>
    f.violations.push(`after the outages: ${(err as Error).message}`),
  );
  exitedProcesses(f, c);
  await trafficTotals(f, bed, ctx.runs);
  f.notes.push(
    `outage ${ctx.outageMs / 1000} s; failed requests during the outages: ${f.windowFailed} of ${f.windowSent}`,
    `time to recover = Redis started again → classification current (the replica failing /health since the outage is UNHEALTHY and every other route has a health record newer than the return): p50 ${Math.round(percentile(catchUp, 50))} ms; the classification tick is ${HEALTH_INTERVAL_S * 1000} ms`,
  );
}

export const redisOutage: Scenario = {
  name: 'redis-outage',
  title: 'Redis stopped under traffic, then started',
  defaultRuns: { full: 2, quick: 1 },
  run: (ctx) =>
    outageVariants(
      ctx,
      'redis',
      (topology) =>
        emptyFigures(
          '2. Redis stopped',
          topology === 'all-in-one'
            ? 'all-in-one (--redis-url)'
            : 'coordinator + 2 proxies + prober',
        ),
      (f, bed, rand, topology) => variant(ctx, f, bed, rand, topology),
    ),
};
