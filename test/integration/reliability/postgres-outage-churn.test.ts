/**
 * Issue 15 defect "churn while PostgreSQL is down": a replica that crashes while the store is
 * away must not start a chain of failing restarts and replacements. Reconciliation pauses (the
 * effect waits for its transition to be durable), and when PostgreSQL returns it resumes at
 * once with exactly one recovery, back to full capacity.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFlotilla, type Flotilla } from '../../../src/index.ts';
import { spawnPostgres } from '../../harness/services.ts';
import { waitFor } from '../../harness/wait.ts';

const repo = resolve(import.meta.dirname, '../../..');
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const quiet = { info() {}, warn() {}, error() {} };

async function running(f: Flotilla, name: string, replicas: number, timeoutMs = 40_000) {
  return waitFor(
    async () => {
      const v = await f.get(name).catch(() => null);
      return v?.state === 'RUNNING' &&
        v.replicas.filter((r) => r.state === 'HEALTHY' && r.endpoint).length === replicas
        ? v
        : null;
    },
    { timeoutMs, message: `${name} RUNNING with ${replicas} HEALTHY replicas` },
  );
}

/** Replica actor ids alive now, by state (read from the actors: no store involved). */
function replicaStates(f: Flotilla): Map<string, string> {
  const out = new Map<string, string>();
  for (const [id, state] of f.runtime.actorStates()) {
    if (id.startsWith('replica:')) out.set(id, state);
  }
  return out;
}

describe('a PostgreSQL outage while a replica crashes', () => {
  it('pauses reconciliation during the outage and recovers the crashed replica exactly once when PostgreSQL returns', async () => {
    const pg = await spawnPostgres();
    cleanups.push(() => pg.stop());
    const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-pg-churn-'));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    const f = await createFlotilla({
      databaseUrl: pg.url,
      dataDir,
      modelRoots: [repo],
      proxy: false,
      logger: quiet,
      runtime: {
        healthCheckIntervalS: 0.25,
        evictionIntervalS: 3600,
        shards: 1,
        deploymentDefaults: {
          drain_timeout_s: 1,
          terminate_timeout_s: 2,
          backoff_base_s: 0.2,
          backoff_cap_s: 0.5,
        },
      },
    });
    cleanups.push(() => f.close());
    await f.deploy({
      name: 'echo',
      model_path: 'examples/echo',
      replicas: 2,
      health_check: {
        interval_s: 0.3,
        timeout_s: 0.5,
        healthy_threshold: 1,
        unhealthy_threshold: 2,
        startup_timeout_s: 60,
      },
    });
    const before = await running(f, 'echo', 2);
    const victim = before.replicas[0] as (typeof before.replicas)[number];
    const survivor = before.replicas[1] as (typeof before.replicas)[number];

    await pg.halt();
    // The crash: the echo replica exits at once.
    await fetch(`${victim.endpoint}/admin/crash`, { method: 'POST' }).catch(() => {});

    // 6 s of outage, sampled from the actors (the API needs the store).
    const seen = new Set<string>();
    const outageEnd = Date.now() + 6_000;
    while (Date.now() < outageEnd) {
      for (const id of replicaStates(f).keys()) seen.add(id);
      await new Promise((r) => setTimeout(r, 50));
    }
    const during = replicaStates(f);
    // No replacement churned through during the outage: the same two replicas, the survivor
    // still HEALTHY, the victim waiting (UNHEALTHY, its restart paused), nothing TERMINATING.
    expect([...seen].sort()).toEqual([`replica:${survivor.id}`, `replica:${victim.id}`].sort());
    expect(during.get(`replica:${survivor.id}`)).toBe('HEALTHY');
    expect(during.get(`replica:${victim.id}`)).toBe('UNHEALTHY');

    // The pause is said where an operator looks while the API cannot read the store.
    const ready = await f.ready();
    expect(ready.missing.some((m) => m.startsWith('reconciliation paused'))).toBe(true);

    const t0 = performance.now();
    await pg.resume();
    const after = await running(f, 'echo', 2, 20_000);
    const recoveredMs = performance.now() - t0;
    console.log(
      `[postgres-outage-churn] back to 2 HEALTHY replicas ${recoveredMs.toFixed(0)} ms after PostgreSQL answered again`,
    );
    // Exactly one recovery: the victim restarted in place (same id), no replacement replica.
    expect(after.replicas.map((r) => r.id).sort()).toEqual([survivor.id, victim.id].sort());
    for (const id of replicaStates(f).keys()) seen.add(id);
    expect(seen.size).toBe(2);
    const restarted = after.replicas.find((r) => r.id === victim.id);
    expect(restarted?.restarts).toBe(1);
    const history = (await f.events('echo', { limit: 1000 })).items
      .filter((h) => h.actor_id === `replica:${victim.id}`)
      .map((h) => h.to_state);
    // Written when the store returned: none of what the actor went through is lost.
    expect(history).toEqual(['STARTING', 'HEALTHY', 'UNHEALTHY', 'HEALTHY']);
    expect(recoveredMs).toBeLessThan(15_000);
  });
});
