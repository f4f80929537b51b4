/**
 * Scenario 4: two coordinators elected through etcd (plus two proxies and a prober).
 *  a. etcd stopped (30 s in the full run), then started: the leader, unable to confirm its
 *     lease, exits; the suite restarts exited coordinators like a supervisor would; a leader
 *     answers again after etcd returns; the proxies keep serving meanwhile.
 *  b. The leader partitioned: SIGSTOP for longer than its 5 s lease, then SIGCONT. The standby
 *     takes over; the old leader exits once it runs again; no write of the old leader lands
 *     after the new leader's election — neither in PostgreSQL (every statement is logged with
 *     the coordinator's application_name) nor in etcd (the Traefik version records carry the
 *     writer's epoch: the leader key's create revision).
 * After each: the fleet settles and the Traefik keys in etcd match the live routing table.
 */
import { readFileSync } from 'node:fs';
import { Etcd3 } from 'etcd3';
import type { Cluster } from '../lib/cluster.ts';
import type { Context, Scenario } from '../lib/context.ts';
import { emptyFigures, type Figures, percentile } from '../lib/figures.ts';
import { until } from '../lib/http.ts';
import type { ServeProcess } from '../lib/serve.ts';
import { sleep, testBed, waitSettled } from '../lib/setup.ts';

const LEASE_S = 5;

/** Restarts coordinators that exited, as systemd or Kubernetes would (1 s apart). */
function supervise(c: Cluster): { stop(): void; restarts: number } {
  let running = true;
  const state = {
    restarts: 0,
    stop: () => {
      running = false;
    },
  };
  const busy = new Set<ServeProcess>();
  void (async () => {
    while (running) {
      for (const p of c.coordinators) {
        if (p.alive || busy.has(p) || !running) continue;
        busy.add(p);
        state.restarts++;
        c.restart(p)
          .catch(() => {})
          .finally(() => sleep(1_000).then(() => busy.delete(p)));
      }
      await sleep(250);
    }
  })();
  return state;
}

interface Elected {
  at: number;
  createRevision: string;
}

function elections(p: ServeProcess): Elected[] {
  return p.logLines('elected coordinator leader').map((o) => ({
    at: o.time as number,
    createRevision: String((o.fence as { createRevision: string }).createRevision),
  }));
}

async function leaderOf(c: Cluster): Promise<ServeProcess | undefined> {
  return c.leader();
}

/** Traefik keys vs the live table: every live deployment's servers are its HEALTHY replicas' endpoints, nothing else. */
async function traefikMismatch(etcd: Etcd3, c: Cluster, api: string): Promise<string | null> {
  const views = await c.list(api);
  if (!views) return 'API not answering';
  const kvs = await etcd.getAll().prefix('traefik/http/services/').strings();
  const got = new Map<string, Set<string>>();
  for (const [k, v] of Object.entries(kvs)) {
    const m = k.match(
      /^traefik\/http\/services\/flotilla_([^/]+)\/loadBalancer\/servers\/\d+\/url$/,
    );
    if (!m) continue;
    const s = got.get(m[1]!) ?? new Set<string>();
    s.add(v.replace(/\/$/, ''));
    got.set(m[1]!, s);
  }
  for (const v of views) {
    const healthy = new Set(v.routes.filter((r) => r.state === 'HEALTHY').map((r) => r.replica_id));
    const want = new Set(
      v.replicas
        .filter((r) => healthy.has(r.id) && r.endpoint)
        .map((r) => r.endpoint!.replace(/\/$/, '')),
    );
    const have = got.get(v.name) ?? new Set<string>();
    if (want.size !== have.size || [...want].some((u) => !have.has(u))) {
      return `${v.name}: etcd servers ${JSON.stringify([...have])}, live HEALTHY ${JSON.stringify([...want])}`;
    }
    got.delete(v.name);
  }
  if (got.size) return `keys for deployments not in the table: ${[...got.keys()].join(', ')}`;
  return null;
}

/** PostgreSQL log lines (log_statement=all) that modify data, sent by `app` between two times. */
function pgWrites(logFile: string, app: string, from: number, to: number): string[] {
  const out: string[] = [];
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.includes(`[${app}]`)) continue;
    const at = Date.parse(`${line.slice(0, 23).replace(' ', 'T')}Z`);
    if (!(at > from && at <= to)) continue;
    if (/(statement|execute[^:]*):.*\b(INSERT|UPDATE|DELETE)\b/i.test(line))
      out.push(line.slice(0, 200));
  }
  return out;
}

async function converged(f: Figures, tag: string, etcd: Etcd3, c: Cluster) {
  let lead: ServeProcess;
  try {
    lead = await until(() => leaderOf(c), 60_000, `${tag}: a leader answers`);
  } catch (err) {
    f.violations.push((err as Error).message);
    return;
  }
  const api = c.apiOf(lead);
  await waitSettled(c, 120_000, api).catch((err) =>
    f.violations.push(`${tag}: ${(err as Error).message}`),
  );
  let why: string | null = null;
  try {
    await until(
      async () => {
        why = await traefikMismatch(etcd, c, api);
        return why === null;
      },
      30_000,
      'Traefik keys match the live table',
      250,
    );
  } catch {
    f.violations.push(`${tag}: Traefik keys did not converge: ${why}`);
  }
}

export const etcdLeader: Scenario = {
  name: 'etcd-leader',
  title: 'etcd stopped; the leader partitioned (SIGSTOP past its lease)',
  defaultRuns: { full: 2, quick: 1 },
  async run(ctx: Context): Promise<Figures[]> {
    const fa = emptyFigures(
      '4a. etcd stopped',
      'two coordinators (etcd election) + 2 proxies + prober',
    );
    const fb = emptyFigures(
      '4b. leader SIGSTOP > lease',
      'two coordinators (etcd election) + 2 proxies + prober',
    );
    const t0 = performance.now();
    const bed = await testBed(ctx, 'separate', 'etcd', {
      etcd: true,
      coordinators: 2,
      logStatements: true,
    });
    const { cluster: c, traffic } = bed;
    const etcd = new Etcd3({ hosts: [bed.etcd!.url] });
    const sup = supervise(c);
    const puts: Array<{ key: string; modRevision: bigint; epoch: string; at: number }> = [];
    const watcher = await etcd.watch().prefix('flotilla/traefik-versions/').create();
    watcher.on('put', (kv) => {
      try {
        const rec = JSON.parse(kv.value.toString()) as { epoch: string };
        puts.push({
          key: kv.key.toString(),
          modRevision: BigInt(kv.mod_revision),
          epoch: String(rec.epoch),
          at: Date.now(),
        });
      } catch {
        // not a version record
      }
    });
    const takeover: number[] = [];
    try {
      for (let i = 0; i < ctx.runs; i++) {
        try {
          // a. etcd stopped.
          await converged(fa, `etcd outage ${i + 1} (before)`, etcd, c);
          const from = performance.now();
          await bed.etcd!.stop();
          fa.faultsInjected++;
          await sleep(ctx.outageMs);
          const exited = c.coordinators.filter(
            (p) => p.starts > 0 && (!p.alive || p.starts > 1),
          ).length;
          const answering = await leaderOf(c);
          await bed.etcd!.start();
          const backAt = performance.now();
          await until(() => leaderOf(c), 90_000, 'a leader after etcd returned').catch((err) =>
            fa.violations.push((err as Error).message),
          );
          fa.recoverMs.push(performance.now() - backAt);
          const w = traffic.window(from, performance.now());
          fa.windowSent += w.sent;
          fa.windowFailed += w.failed;
          fa.notes.push(
            `outage ${i + 1}: at its end ${answering ? `${answering.spec.label} still answered /v1 (leadership unconfirmed!)` : 'no coordinator answered /v1'}; coordinators restarted by the supervisor so far: ${sup.restarts} (${exited} had exited)`,
          );
          if (answering)
            fa.violations.push(
              `etcd outage ${i + 1}: ${answering.spec.label} still served /v1 after ${ctx.outageMs} ms without etcd`,
            );
          await converged(fa, `etcd outage ${i + 1} (after)`, etcd, c);
          ctx.log(
            `  etcd outage ${i + 1}: ${w.failed} of ${w.sent} proxied requests failed; a leader ${Math.round(fa.recoverMs.at(-1)!)} ms after etcd returned`,
          );
        } catch (err) {
          fa.violations.push(`etcd outage ${i + 1}: ${(err as Error).message}`);
        }
        try {
          // b. The leader partitioned.
          const old = await until(() => leaderOf(c), 60_000, 'a leader');
          const oldEpoch = elections(old).at(-1)?.createRevision;
          const oldKey = (
            old.logLines('elected coordinator leader').at(-1)?.fence as { key?: string } | undefined
          )?.key;
          const other = c.coordinators.find((p) => p !== old)!;
          await until(
            () => other.alive && other.lines.some((l) => l.text.startsWith('standby')),
            60_000,
            'the other coordinator stands by',
          );
          const stopAt = performance.now();
          const stopWall = Date.now();
          old.signal('SIGSTOP');
          fb.faultsInjected++;
          let fresh: ServeProcess | undefined;
          try {
            fresh = await until(
              async () => {
                const l = await leaderOf(c);
                return l && l !== old ? l : undefined;
              },
              60_000,
              'the standby takes over',
              100,
            );
            takeover.push(performance.now() - stopAt);
            fb.recoverMs.push(performance.now() - stopAt);
          } catch (err) {
            fb.violations.push(`partition ${i + 1}: ${(err as Error).message}`);
          }
          const hold = Math.max(0, (LEASE_S + 3) * 1000 - (performance.now() - stopAt));
          await sleep(hold);
          const contAt = Date.now();
          const exitsBefore = old.exits.length;
          old.signal('SIGCONT');
          try {
            // By its exit record: the supervisor may have started it again before a poll of
            // `alive` saw it down.
            const exit = await until(
              () => old.exits.slice(exitsBefore)[0],
              15_000,
              'the old leader exits after SIGCONT',
              50,
            );
            fb.notes.push(
              `partition ${i + 1}: old leader exited with ${exit.code ?? exit.signal} ${exit.at - contAt} ms after SIGCONT; standby led ${Math.round(takeover.at(-1) ?? Number.NaN)} ms after SIGSTOP`,
            );
          } catch (err) {
            fb.violations.push(`partition ${i + 1}: ${(err as Error).message} (two leaders)`);
          }
          const oldExitAt = Date.now();
          const w2 = traffic.window(stopAt, performance.now());
          fb.windowSent += w2.sent;
          fb.windowFailed += w2.failed;
          const newElection = fresh
            ? elections(fresh)
                .filter((e) => e.at >= stopWall)
                .at(-1)
            : undefined;
          if (newElection) {
            const label = old.spec.label;
            const late = pgWrites(bed.pg.logFile, label, newElection.at, oldExitAt + 1_000);
            for (const l of late.slice(0, 3))
              fb.violations.push(
                `partition ${i + 1}: PostgreSQL write from the old leader after the election: ${l}`,
              );
            if (late.length > 3)
              fb.violations.push(
                `partition ${i + 1}: … ${late.length - 3} more late PostgreSQL writes`,
              );
            // The new leader's key is created when it starts campaigning, which can be before
            // the old leader's last legitimate writes: a write of the old epoch is late only if
            // the old leader's key was gone at its revision (read back at that revision).
            const candidates = puts.filter(
              (p) => p.epoch === oldEpoch && p.modRevision > BigInt(newElection.createRevision),
            );
            const lateEtcd: typeof candidates = [];
            for (const p of candidates) {
              const then = oldKey
                ? await etcd
                    .get(oldKey)
                    .revision(String(p.modRevision))
                    .exec()
                    .catch(() => null)
                : null;
              if (then?.kvs[0]?.create_revision !== oldEpoch) lateEtcd.push(p);
            }
            for (const p of lateEtcd)
              fb.violations.push(
                `partition ${i + 1}: etcd version record ${p.key} written by the old epoch ${p.epoch} at revision ${p.modRevision}, when its election key was gone (new leader's key revision ${newElection.createRevision})`,
              );
            fb.notes.push(
              `partition ${i + 1}: old epoch ${oldEpoch}, new ${newElection.createRevision}; PostgreSQL writes of the old leader after the election: ${late.length}; etcd writes of the old epoch after it: ${lateEtcd.length}`,
            );
          } else if (fresh) {
            fb.violations.push(`partition ${i + 1}: no election logged by ${fresh.spec.label}`);
          }
          await converged(fb, `partition ${i + 1} (after)`, etcd, c);
          ctx.log(
            `  partition ${i + 1}: standby led ${Math.round(takeover.at(-1) ?? Number.NaN)} ms after SIGSTOP; ${w2.failed} of ${w2.sent} proxied requests failed`,
          );
        } catch (err) {
          fb.violations.push(`partition ${i + 1}: ${(err as Error).message}`);
        }
      }
      sup.stop();
      await traffic.stop();
      const tot = traffic.totals();
      for (const f of [fa, fb]) {
        f.runs = ctx.runs;
        // Traffic is shared by both parts: the totals go on the first row only.
        f.requestsSent = f === fa ? tot.sent : 0;
        f.requestsFailed = f === fa ? tot.failed : 0;
      }
      fa.notes.push(
        `etcd outage ${ctx.outageMs / 1000} s; time to recover = etcd started again → a coordinator answers /v1; requests sent/failed: the whole scenario (4a and 4b)`,
      );
      fb.notes.push(
        `SIGSTOP held ${LEASE_S + 3} s (lease ${LEASE_S} s); time to recover = SIGSTOP → the standby answers /v1: p50 ${Math.round(percentile(takeover, 50))} ms`,
      );
      return [fa, fb];
    } finally {
      sup.stop();
      await watcher.cancel().catch(() => {});
      etcd.close();
      await traffic.stop();
      await bed.close();
      fa.durationMs = fb.durationMs = performance.now() - t0;
    }
  },
};
