/**
 * Two `flotilla serve --role coordinator` processes sharing PostgreSQL (a fresh database),
 * Redis and etcd, plus a prober: one leads, the other stands by (its API port answers
 * /health 200, /ready 503 and /v1/* 503 until it leads). A deployment created on the leader
 * runs and is published to etcd in Traefik's layout; after SIGKILL of the leader the standby
 * takes over, restoring from PostgreSQL, and shows the same deployment RUNNING with the same
 * replica ids (adopted, not restarted).
 *
 * Both coordinators use one data directory: they stand for two coordinator processes of one
 * node, and the process backend adopts replicas through `<dataDir>/replicas/`. Only the
 * leader touches it (a standby starts nothing before it leads).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../src/index.ts';
import { deploy, useCluster } from '../harness/cluster-role.ts';
import { services } from '../harness/isolation.ts';
import { replicaPids } from '../harness/replica-processes.ts';
import { waitFor } from '../harness/wait.ts';

const replicaIds = new Set<string>();
const { spawnRole } = useCluster('etcd', {
  dataDir: mkdtempSync(join(tmpdir(), 'flotilla-etcd-coordinator-')),
  etcd: true,
  // Replicas outlive a SIGKILLed coordinator by design; none may outlive the test.
  afterStop: () => {
    for (const pids of replicaPids([...replicaIds]).values()) {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone: what this wanted.
        }
      }
    }
  },
});

describe('coordinators elected through etcd', () => {
  it('a standby waits, then takes over from a killed leader with the same deployment and replicas', async () => {
    const etcd = new Etcd3({ hosts: services().etcdEndpoints.split(',') });
    try {
      const leader = await spawnRole('coordinator');
      const api = (await leader.waitLine('api ')).text.slice(4);
      const standby = await spawnRole('coordinator');
      await standby.waitLine('standby: waiting for leadership');
      const standbyApi = `http://127.0.0.1:${standby.apiPort}`;
      // Decision: a standby opens its API port but is not ready and serves no /v1.
      expect((await fetch(`${standbyApi}/health`)).status).toBe(200);
      const ready = await fetch(`${standbyApi}/ready`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { missing: string[] }).missing).toEqual([
        'standby: waiting for leadership',
      ]);
      const v1 = await fetch(`${standbyApi}/v1/deployments`);
      expect(v1.status).toBe(503);
      expect(((await v1.json()) as { error: { code: string } }).error.code).toBe(
        'dependency_unavailable',
      );
      await spawnRole('prober');

      const res = await deploy(api, {
        name: 'echo',
        model_path: 'examples/echo',
        replicas: 2,
        health_check: { interval_s: 0.5, timeout_s: 0.5 },
      });
      expect(res.status).toBe(201);
      const get = async (base: string) => {
        const r = await fetch(`${base}/v1/deployments/echo`);
        return r.status === 200 ? ((await r.json()) as DeploymentView) : null;
      };
      const running = await waitFor(
        async () => {
          const v = await get(api);
          return v?.state === 'RUNNING' &&
            v.routes.filter((r) => r.state === 'HEALTHY').length === 2
            ? v
            : null;
        },
        { timeoutMs: 60_000, message: 'echo RUNNING with two HEALTHY routes on the leader' },
      );
      const ids = running.replicas.map((r) => r.id).sort();
      for (const id of ids) replicaIds.add(id);
      const endpoints = running.replicas.map((r) => r.endpoint).sort();

      // The leader publishes the table to etcd in Traefik's layout.
      const servers = async () =>
        Object.values(
          await etcd
            .getAll()
            .prefix('traefik/http/services/flotilla_echo/loadBalancer/servers/')
            .strings(),
        ).sort();
      await waitFor(async () => JSON.stringify(await servers()) === JSON.stringify(endpoints), {
        timeoutMs: 10_000,
        message: 'Traefik servers of echo are its replicas',
      });
      expect(await etcd.get('traefik/http/routers/flotilla_echo/rule').string()).toBe(
        'Path(`/echo`) || PathPrefix(`/echo/`)',
      );
      // Still only one leader.
      expect(standby.lines.some((l) => l.text.startsWith('api '))).toBe(false);

      const killedAt = performance.now();
      leader.child.kill('SIGKILL');
      const took = await standby.waitLine('api ', 30_000);
      console.log(
        `[etcd-coordinator] standby serving the API ${(took.at - killedAt).toFixed(0)} ms after SIGKILL of the leader (lease TTL 5 s)`,
      );
      expect(took.text).toBe(`api ${standbyApi}`);
      const after = await waitFor(
        async () => {
          const v = await get(standbyApi);
          return v?.state === 'RUNNING' ? v : null;
        },
        { timeoutMs: 30_000, message: 'echo RUNNING on the new leader' },
      );
      expect(after.replicas.map((r) => r.id).sort()).toEqual(ids);
      expect(after.replicas.map((r) => r.endpoint).sort()).toEqual(endpoints);
      expect((await fetch(`${standbyApi}/ready`)).status).toBe(200);
      // The new leader keeps Traefik's keys (its writes win by a newer election revision).
      await waitFor(async () => JSON.stringify(await servers()) === JSON.stringify(endpoints), {
        timeoutMs: 10_000,
        message: 'Traefik servers of echo after the takeover',
      });
    } finally {
      etcd.close();
    }
  });
});
