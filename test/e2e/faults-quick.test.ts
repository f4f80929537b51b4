/**
 * The fault suite's short subset (faults/, `npm run faults -- --quick` runs more): real
 * `flotilla serve` processes, echo replicas and the suite's own PostgreSQL and Redis.
 *  - Scenario 1: the coordinator killed (SIGKILL) at 2 seeded points per topology under a
 *    workload and traffic: no acknowledged command lost, no replica id started twice, no
 *    replica process that no actor owns, the fleet converges after each restart, and with
 *    separate proxy processes no proxied request fails while the coordinator is down.
 *  - Scenario 3: PostgreSQL stopped 5 s: writes answer 503 store_unavailable, /ready names
 *    the database, the proxies keep serving, the transition made meanwhile reaches the history,
 *    no process exits.
 * Timing bounds (answers within 2 s, recovery times) are reported by `npm run faults`, not
 * asserted here: this machine's load decides them.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { killRunsMatching } from '../../faults/lib/serve.ts';
import { destroyAllServices } from '../../faults/lib/services.ts';
import { scenarioContext } from '../../faults/run.ts';
import { coordinatorKill } from '../../faults/scenarios/coordinator-kill.ts';
import { postgresOutage } from '../../faults/scenarios/postgres-outage.ts';

const seed = Number(process.env.FLOTILLA_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const logRoot = mkdtempSync(join(tmpdir(), 'flotilla-faults-quick-'));
const opts = {
  seed,
  logRoot,
  quick: true,
  log: (m: string) => console.log(`[faults seed ${seed}] ${m}`),
};

// A scenario cut short (a test timeout) leaves its processes and servers: none may outlive the file.
afterAll(async () => {
  await killRunsMatching(`-${seed}-${process.pid}`);
  await destroyAllServices();
});

describe('fault suite, quick subset', () => {
  it('coordinator kill -9 at 2 points per topology: nothing acknowledged lost, no duplicate or orphan replica, converged, no failed request with separate proxies', async () => {
    const rows = await coordinatorKill.run(scenarioContext(coordinatorKill, { ...opts, runs: 2 }));
    expect(rows.map((r) => r.variant)).toEqual(['all-in-one', 'coordinator + 2 proxies + prober']);
    for (const r of rows) {
      expect(r.faultsInjected, r.variant).toBe(2);
      expect(r.commandsAcknowledged, r.variant).toBeGreaterThan(0);
      expect(r.violations, `${r.variant} (seed ${seed}, logs ${logRoot})`).toEqual([]);
      expect(r.acknowledgedLost).toBe(0);
      expect(r.duplicateReplicas).toBe(0);
      expect(r.orphanReplicas).toBe(0);
    }
    const separate = rows[1]!;
    expect(separate.windowSent).toBeGreaterThan(0);
    expect(separate.windowFailed, 'proxied requests failed while the coordinator was down').toBe(0);
  }, 1_200_000);

  it('PostgreSQL stopped 5 s: 503 store_unavailable, /ready says why, the proxies serve, the transition reaches the history, nothing exits', async () => {
    const [row] = await postgresOutage.run(
      scenarioContext(postgresOutage, { ...opts, runs: 1, outageS: 5 }),
    );
    expect(row!.faultsInjected).toBe(1);
    // Answer times over 2 s are the machine's load, reported by `npm run faults`.
    const violations = row!.violations.filter((v) => !/answered after \d+ ms/.test(v));
    expect(violations, `seed ${seed}, logs ${logRoot}`).toEqual([]);
    expect(row!.windowSent).toBeGreaterThan(0);
    expect(row!.windowFailed).toBe(0);
  }, 300_000);
});
