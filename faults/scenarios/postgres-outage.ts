/**
 * Scenario 3: PostgreSQL stopped (30 s in the full run) under traffic, then started again.
 * Checked: API writes answer 503 `store_unavailable` within 2 s (reads answer within 2 s, from
 * memory or with the same 503), `/ready` answers 503 naming the database, the proxies keep
 * serving, a route transition that happens during the outage (a replica made to fail /health)
 * is in the history once the store returns (and the history's last state of every route and
 * replica is the state the actors show), and no process exits.
 */
import type { Topology } from '../lib/cluster.ts';
import type { Context, Scenario } from '../lib/context.ts';
import { emptyFigures, type Figures, percentile } from '../lib/figures.ts';
import { type Answer, call, until } from '../lib/http.ts';
import type { Rng } from '../lib/prng.ts';
import {
  type Bed,
  exitedProcesses,
  outageVariants,
  setHealth,
  sleep,
  trafficTotals,
  waitSettled,
} from '../lib/setup.ts';

interface HistoryItem {
  actor_id: string;
  kind: string;
  from_state: string | null;
  to_state: string;
  at: string;
}

export const STORE_UNAVAILABLE = 'store_unavailable';

async function history(api: string, id: string): Promise<HistoryItem[]> {
  const out: HistoryItem[] = [];
  let after: number | null = null;
  for (;;) {
    const r: Answer<{ items: Array<HistoryItem & { id: number }>; next: number | null }> =
      await call(
        api,
        'GET',
        `/v1/deployments/${id}/events?limit=500${after !== null ? `&after=${after}` : ''}`,
      );
    if (r.status !== 200) throw new Error(`events of ${id}: ${r.status}`);
    // actor_id is `<kind>:<id>`.
    out.push(
      ...r.body.items.map((e: HistoryItem) => ({
        ...e,
        actor_id: e.actor_id.slice(e.actor_id.indexOf(':') + 1),
      })),
    );
    if (r.body.next === null) return out;
    after = r.body.next;
  }
}

async function variant(
  ctx: Context,
  f: Figures,
  bed: Bed,
  rand: Rng,
  topology: Topology,
): Promise<void> {
  const { cluster: c, traffic } = bed;
  const apiLatency: number[] = [];
  const codes: Record<string, number> = {};
  for (let i = 0; i < ctx.runs; i++) {
    const before = await waitSettled(c, 120_000);
    const dep = rand.pick(before);
    const victim = rand.pick(dep.replicas);
    const victimRoute = dep.routes.find((r) => r.replica_id === victim.id)!;
    const from = performance.now();
    const fromWall = Date.now();
    await bed.pg.stop();
    f.faultsInjected++;
    ctx.log(
      `  ${topology} outage ${i + 1}: PostgreSQL stopped; ${victim.id} of ${dep.name} fails /health during it`,
    );
    await setHealth(victim.endpoint!, false);
    let readyChecked = false;
    let n = 0;
    let sawUnhealthy = false;
    while (performance.now() - from < ctx.outageMs) {
      const write = n++ % 2 === 0;
      const a = write
        ? await call(
            c.apiUrl,
            'POST',
            '/v1/deployments',
            { name: `pgx${i}-${n}`, model_path: 'examples/echo', replicas: 1 },
            10_000,
          )
        : await call(c.apiUrl, 'GET', `/v1/deployments/${dep.name}`, undefined, 10_000);
      apiLatency.push(a.ms);
      const code =
        (a.body as { error?: { code?: string } } | undefined)?.error?.code ?? String(a.status);
      codes[`${write ? 'write' : 'read'} ${a.status} ${code}`] =
        (codes[`${write ? 'write' : 'read'} ${a.status} ${code}`] ?? 0) + 1;
      if (a.ms > 2_000)
        f.violations.push(
          `outage ${i + 1}: ${write ? 'POST' : 'GET'} answered after ${Math.round(a.ms)} ms (${a.status})`,
        );
      if (write && !(a.status === 503 && code === STORE_UNAVAILABLE)) {
        f.violations.push(
          `outage ${i + 1}: a create during the outage answered ${a.status} ${code}, not 503 ${STORE_UNAVAILABLE}`,
        );
      }
      if (!write && a.status === 200) {
        const v = a.body as { routes: Array<{ id: string; state: string }> };
        if (v.routes.find((r) => r.id === victimRoute.id)?.state === 'UNHEALTHY')
          sawUnhealthy = true;
      } else if (!write && !(a.status === 503 && code === STORE_UNAVAILABLE)) {
        f.violations.push(`outage ${i + 1}: a read during the outage answered ${a.status} ${code}`);
      }
      if (!readyChecked && performance.now() - from > 2_000) {
        readyChecked = true;
        const r = await call<{ ready?: boolean; missing?: string[] }>(
          c.apiUrl,
          'GET',
          '/ready',
          undefined,
          5_000,
        );
        const why = JSON.stringify(r.body);
        f.notes.push(
          `/ready during the outage (${topology}): ${r.status} ${why} in ${Math.round(r.ms)} ms`,
        );
        if (r.status !== 503 || !/database|postgres/i.test(why))
          f.violations.push(`outage ${i + 1}: /ready answered ${r.status} ${why}`);
      }
      await sleep(200);
    }
    await bed.pg.start();
    const backAt = performance.now();
    const w = traffic.window(from, backAt);
    f.windowSent += w.sent;
    f.windowFailed += w.failed;
    // Writes work again.
    await until(
      async () =>
        (await call(c.apiUrl, 'POST', `/v1/deployments/${dep.name}/scale`, { replicas: 2 }, 5_000))
          .status === 200,
      60_000,
      'a write succeeds after PostgreSQL returned',
      100,
    );
    f.recoverMs.push(performance.now() - backAt);
    // The transition made during the outage is in the history, dated inside it.
    try {
      // The route leaves HEALTHY (it may be replaced at once after the outage): its history row.
      let h: HistoryItem[] = [];
      await until(
        async () => {
          h = await history(c.apiUrl, dep.id);
          return h.some((e) => e.actor_id === victimRoute.id && e.to_state === 'UNHEALTHY');
        },
        30_000,
        `a history row: route ${victimRoute.id} → UNHEALTHY`,
      );
      const t = h.find(
        (e) =>
          e.actor_id === victimRoute.id &&
          e.to_state === 'UNHEALTHY' &&
          Date.parse(e.at) >= fromWall,
      );
      if (!t)
        f.violations.push(
          `outage ${i + 1}: no history row for route ${victimRoute.id} → UNHEALTHY after the outage began (seen during the outage: ${sawUnhealthy})`,
        );
      else if (Date.parse(t.at) > fromWall + ctx.outageMs + 5_000 && sawUnhealthy) {
        f.violations.push(
          `outage ${i + 1}: the route went UNHEALTHY during the outage but its history row is dated ${t.at}`,
        );
      }
      f.notes.push(
        `outage ${i + 1} (${topology}): route UNHEALTHY ${t ? `recorded at +${Math.round(Date.parse(t.at) - fromWall)} ms from the outage start` : 'not recorded'}; seen UNHEALTHY through the API during the outage: ${sawUnhealthy}`,
      );
    } catch (err) {
      f.violations.push(`outage ${i + 1}: ${(err as Error).message}`);
    }
    await setHealth(victim.endpoint!, true).catch(() => {});
    const after = await waitSettled(c, 120_000).catch((err) => {
      f.violations.push(`after outage ${i + 1}: ${(err as Error).message}`);
      return null;
    });
    // None lost: each actor's last history row is the state the actors show now.
    for (const v of after ?? []) {
      const h = await history(c.apiUrl, v.id);
      const last = new Map<string, string>();
      const seq = new Map<string, string[]>();
      for (const e of h) {
        last.set(e.actor_id, e.to_state);
        seq.set(e.actor_id, [
          ...(seq.get(e.actor_id) ?? []),
          `${e.from_state}→${e.to_state}@${e.at.slice(11, 23)}`,
        ]);
      }
      for (const a of [...v.replicas.map((r) => ({ id: r.id, state: r.state })), ...v.routes]) {
        if (last.get(a.id) !== a.state) {
          f.violations.push(
            `after outage ${i + 1}: ${v.name} actor ${a.id} is ${a.state}, its history ends in ${last.get(a.id) ?? 'nothing'} (${(seq.get(a.id) ?? []).join(' ')})`,
          );
        }
      }
      if (last.get(v.id) !== undefined && last.get(v.id) !== v.state) {
        f.violations.push(
          `after outage ${i + 1}: deployment ${v.name} is ${v.state}, its history ends in ${last.get(v.id)}`,
        );
      }
    }
    ctx.log(
      `  ${topology} outage ${i + 1}: ${w.failed} of ${w.sent} proxied requests failed; writes back ${Math.round(f.recoverMs.at(-1)!)} ms after PostgreSQL returned`,
    );
  }
  exitedProcesses(f, c);
  await trafficTotals(f, bed, ctx.runs);
  f.notes.push(
    `outage ${ctx.outageMs / 1000} s; proxied requests failed during the outages: ${f.windowFailed} of ${f.windowSent}`,
    `API calls during the outages: ${apiLatency.length}, answer time p50 ${Math.round(percentile(apiLatency, 50))} ms, max ${Math.round(Math.max(...apiLatency, 0))} ms; answers ${JSON.stringify(codes)}`,
    'time to recover = PostgreSQL started again → the first write (scale) answered 200',
  );
}

export const postgresOutage: Scenario = {
  name: 'postgres-outage',
  title: 'PostgreSQL stopped under traffic, then started',
  defaultRuns: { full: 2, quick: 1 },
  run: (ctx) =>
    outageVariants(
      ctx,
      'pg',
      (topology) =>
        emptyFigures(
          '3. PostgreSQL stopped',
          topology === 'all-in-one' ? 'all-in-one' : 'coordinator + 2 proxies + prober',
        ),
      (f, bed, rand, topology) => variant(ctx, f, bed, rand, topology),
    ),
};
