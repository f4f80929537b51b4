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
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../src/index.ts';
import { stopChildren } from '../harness/child-processes.ts';
import { createDatabase, services } from '../harness/isolation.ts';
import { replicaPids } from '../harness/replica-processes.ts';
import { freePort } from '../harness/services.ts';
import { waitFor } from '../harness/wait.ts';

const REPO = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));
const dbName = `flotilla_etcd_${randomBytes(4).toString('hex')}`;
const redisPrefix = `etcd:${dbName}:`;
const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-etcd-coordinator-'));
let databaseUrl = '';
const children: ChildProcess[] = [];
const replicaIds = new Set<string>();

interface Node {
  child: ChildProcess;
  apiPort: number;
  /** stdout lines with the time each arrived. */
  lines: Array<{ at: number; text: string }>;
  stderr: () => string;
}

function start(role: 'coordinator' | 'prober', apiPort: number): Node {
  const child = spawn(
    process.execPath,
    [
      'bin/flotilla.js',
      'serve',
      '--role',
      role,
      '--api-port',
      String(apiPort),
      '--data-dir',
      dataDir,
      '--model-root',
      REPO,
      '--health-interval',
      '0.5',
      '--redis-prefix',
      redisPrefix,
    ],
    {
      cwd: REPO,
      env: {
        ...process.env,
        DATABASE_URL: databaseUrl,
        REDIS_URL: services().redisUrl,
        ETCD_ENDPOINTS: services().etcdEndpoints,
        FLOTILLA_API_TOKEN: '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  const node: Node = { child, apiPort, lines: [], stderr: () => err };
  let buf = '';
  let err = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    for (const text of parts) node.lines.push({ at: performance.now(), text });
  });
  child.stderr!.on('data', (d) => {
    err += d;
  });
  return node;
}

async function waitLine(n: Node, prefix: string, timeoutMs = 60_000) {
  return waitFor(() => n.lines.find((l) => l.text.startsWith(prefix)), {
    timeoutMs,
    message: () =>
      `"${prefix}" from pid ${n.child.pid} (exit ${n.child.exitCode}); stdout ${JSON.stringify(n.lines.map((l) => l.text))}; stderr tail ${n.stderr().slice(-2000)}`,
  });
}

beforeAll(async () => {
  databaseUrl = await createDatabase(dbName);
});

afterAll(async () => {
  await stopChildren(children);
  // Replicas outlive a SIGKILLed coordinator by design; none may outlive the test.
  for (const pids of replicaPids([...replicaIds]).values()) {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
  }
});

describe('coordinators elected through etcd', () => {
  it('a standby waits, then takes over from a killed leader with the same deployment and replicas', async () => {
    const etcd = new Etcd3({ hosts: services().etcdEndpoints.split(',') });
    try {
      const leader = start('coordinator', await freePort());
      const api = (await waitLine(leader, 'api ')).text.slice(4);
      const standby = start('coordinator', await freePort());
      await waitLine(standby, 'standby: waiting for leadership');
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
      start('prober', await freePort());

      const res = await fetch(`${api}/v1/deployments`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          name: 'echo',
          model_path: 'examples/echo',
          replicas: 2,
          health_check: { interval_s: 0.5, timeout_s: 0.5 },
        }),
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
      const took = await waitLine(standby, 'api ', 30_000);
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
