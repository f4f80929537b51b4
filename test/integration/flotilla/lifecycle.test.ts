/**
 * Issue 12 ("Lifecycle an operator can trust") through the whole stack with real processes:
 * capacity waits, crash loops that end, restarts that are not failures, no stuck deployments.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createFlotilla, type Flotilla, type FlotillaOptions } from '../../../src/index.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';

const repo = resolve(import.meta.dirname, '../../..');
const open: Flotilla[] = [];
afterEach(async () => {
  for (const f of open.splice(0)) await f.close();
});

const HEALTH = {
  interval_s: 0.5,
  timeout_s: 0.5,
  healthy_threshold: 1,
  unhealthy_threshold: 2,
  startup_timeout_s: 30,
};
const ECHO = `node ${join(repo, 'bin/flotilla.js')} echo-server --port {port}`;
const CRASH = "sh -c 'echo boom >&2; exit 3'";

async function options(
  ctx: Parameters<typeof isolatedDatabase>[0],
  extra: Partial<FlotillaOptions> = {},
): Promise<FlotillaOptions> {
  const { url } = await isolatedDatabase(ctx);
  return {
    databaseUrl: url,
    dataDir: mkdtempSync(join(tmpdir(), 'flotilla-life-')),
    modelRoots: [repo],
    proxy: false,
    runtime: { healthCheckIntervalS: 0.25, shards: 2, deploymentDefaults: { backoff_base_s: 0.2 } },
    ...extra,
  };
}

async function start(opts: FlotillaOptions): Promise<Flotilla> {
  const f = await createFlotilla(opts);
  open.push(f);
  return f;
}

async function close(f: Flotilla): Promise<void> {
  open.splice(open.indexOf(f), 1);
  await f.close();
}

function running(f: Flotilla, name: string, n: number, timeoutMs = 40_000) {
  return waitFor(
    async () => {
      const v = await f.get(name);
      return v.state === 'RUNNING' && v.healthy_replicas === n ? v : null;
    },
    { timeoutMs, message: `${name} RUNNING with ${n} HEALTHY replicas` },
  );
}

describe('capacity waits; it never looks like a crash', () => {
  it('runs three replicas that declare no resources on a node of capacity cpu=1 (undeclared cpu is best effort)', async (ctx) => {
    const f = await start(await options(ctx, { capacity: { cpu: 1 } }));
    await f.deploy({ name: 'echo', command: ECHO, replicas: 3, health_check: HEALTH });
    const v = await running(f, 'echo', 3);
    expect(v.replicas.map((r) => r.restarts)).toEqual([0, 0, 0]);
  });

  it('a replica that does not fit waits with the reason and starts within 2 s of another deployment being removed, counting nothing', async (ctx) => {
    const f = await start(await options(ctx, { capacity: { cpu: 2 } }));
    await f.deploy({
      name: 'first',
      command: ECHO,
      replicas: 1,
      resource_slots: { cpu: 1 },
      health_check: HEALTH,
    });
    await running(f, 'first', 1);
    await f.deploy({
      name: 'second',
      command: ECHO,
      replicas: 2,
      resource_slots: { cpu: 1 },
      health_check: HEALTH,
    });
    const waiting = await waitFor(
      async () => {
        const v = await f.get('second');
        return v.healthy_replicas === 1 && v.reason?.includes('waiting for capacity') ? v : null;
      },
      { timeoutMs: 30_000, message: 'second: one HEALTHY, one waiting for capacity' },
    );
    expect(waiting.reason).toContain('waiting for capacity: cpu requested 1, free 0 of 2');
    expect(waiting.state).toBe('RUNNING');
    expect(waiting.reason).not.toContain('crash loop');
    const t0 = Date.now();
    await f.destroy('first');
    await waitFor(
      async () => {
        const v = await f.get('second');
        return v.replicas.some((r) => r.endpoint && r.state !== 'HEALTHY' && !r.reason) ||
          v.healthy_replicas === 2
          ? v
          : null;
      },
      { timeoutMs: 10_000, intervalMs: 20, message: 'the waiting replica started' },
    );
    const startedAfterMs = Date.now() - t0;
    const v = await running(f, 'second', 2);
    expect(startedAfterMs).toBeLessThan(2_000);
    expect(v.replicas.map((r) => r.restarts)).toEqual([0, 0]);
  });
});

describe('crash loops end', () => {
  it('a deployment whose replicas all exit goes to ERROR quoting the exit code and the output, keeps their logs for --previous, and a PATCH retries it', async (ctx) => {
    const f = await start(await options(ctx));
    await f.deploy({ name: 'boom', command: CRASH, replicas: 1, health_check: HEALTH });
    const v = await waitFor(
      async () => {
        const d = await f.get('boom');
        return d.state === 'ERROR' ? d : null;
      },
      { timeoutMs: 60_000, message: 'boom in ERROR' },
    );
    expect(v.reason).toMatch(/^crash loop: 3 failed start\(s\) in a row/);
    expect(v.reason).toContain('exit code 3');
    expect(v.reason).toContain('boom');
    const previous = await waitFor(
      async () => {
        const text = await f.logs('boom', { previous: true });
        return text.includes('boom') ? text : null;
      },
      { timeoutMs: 10_000, message: 'previous logs with boom' },
    );
    expect(previous).toContain('boom');
    await f.update('boom', { command: ECHO });
    await running(f, 'boom', 1);
  });
});

describe('a restart is not a failure', () => {
  it('two plain close/start cycles (replicas stopped) start the replicas again as a planned event with RESTARTS 0', async (ctx) => {
    const opts = await options(ctx);
    let f = await start(opts);
    await f.deploy({ name: 'echo', command: ECHO, replicas: 2, health_check: HEALTH });
    const before = await running(f, 'echo', 2);
    for (let i = 0; i < 2; i++) {
      await close(f);
      f = await start(opts);
      await running(f, 'echo', 2);
    }
    const v = await f.get('echo');
    expect(v.replicas.map((r) => r.id).sort()).toEqual(before.replicas.map((r) => r.id).sort());
    expect(v.replicas.map((r) => r.restarts)).toEqual([0, 0]);
    const events = (await f.events('echo', { limit: 1000 })).items;
    const replicaEvents = events.filter((e) => e.actor_id.startsWith('replica:'));
    expect(replicaEvents.some((e) => e.to_state === 'UNHEALTHY')).toBe(false);
    expect(v.replicas.map((r) => r.endpoint).sort()).toEqual(
      before.replicas.map((r) => r.endpoint).sort(),
    );
    expect(events.filter((e) => e.reason?.includes('planned shutdown')).length).toBeGreaterThan(0);
  });
});

describe('no stuck deployments', () => {
  it('a deployment with replicas: 0 is RUNNING with nothing to serve', async (ctx) => {
    const f = await start(await options(ctx));
    await f.deploy({ name: 'zero', command: ECHO, replicas: 0, health_check: HEALTH });
    const v = await running(f, 'zero', 0, 10_000);
    expect(v.current_replicas).toBe(0);
  });

  it('an empty PATCH and a PATCH of the same command create no revision and restart nothing', async (ctx) => {
    const f = await start(await options(ctx));
    const d = await f.deploy({ name: 'echo', command: ECHO, replicas: 1, health_check: HEALTH });
    const before = await running(f, 'echo', 1);
    await f.update('echo', {});
    await f.update('echo', { command: ECHO });
    const after = await f.get('echo');
    expect(after.revision_id).toBe(before.revision_id);
    expect(await f.store.listRevisions(d.id)).toHaveLength(1);
    expect(after.replicas.map((r) => r.id)).toEqual(before.replicas.map((r) => r.id));
    expect(after.replicas.map((r) => r.endpoint)).toEqual(before.replicas.map((r) => r.endpoint));
  });

  it('PATCH applies min_replicas, max_replicas and scaling_policy, and refuses bad bounds with 400 naming the field', async (ctx) => {
    const f = await start(await options(ctx));
    await f.deploy({ name: 'echo', command: ECHO, replicas: 1, health_check: HEALTH });
    await running(f, 'echo', 1);
    const v = await f.update('echo', {
      max_replicas: 3,
      scaling_policy: { target_metric: 'inflight', target_value: 4 },
    });
    expect(v.max_replicas).toBe(3);
    const stored = (await f.store.getDeployment('echo'))!.spec as Record<string, unknown>;
    expect(stored.scaling_policy).toEqual({ target_metric: 'inflight', target_value: 4 });
    await expect(f.scale('echo', 4)).rejects.toMatchObject({ code: 'validation' });
    await expect(f.update('echo', { min_replicas: 5 })).rejects.toMatchObject({
      code: 'validation',
      details: [expect.objectContaining({ path: 'min_replicas' })],
    });
    expect((await f.get('echo')).min_replicas).toBe(0);
  });

  it('an update in PROVISIONING, RUNNING and ERROR is what the actor runs, and the database agrees after a restart', async (ctx) => {
    const opts = await options(ctx);
    let f = await start(opts);
    const slow = `${ECHO} --startup-delay-ms 60000`;
    await f.deploy({ name: 'prov', command: slow, replicas: 1, health_check: HEALTH });
    await f.deploy({ name: 'run', command: ECHO, replicas: 1, health_check: HEALTH });
    await f.deploy({ name: 'err', command: CRASH, replicas: 1, health_check: HEALTH });
    await running(f, 'run', 1);
    await waitFor(async () => (await f.get('err')).state === 'ERROR', {
      timeoutMs: 60_000,
      message: 'err in ERROR',
    });
    expect((await f.get('prov')).state).toBe('PROVISIONING');
    for (const name of ['prov', 'run', 'err']) {
      await f.update(name, { environ: { CHANGED: name } });
    }
    await close(f);
    f = await start(opts);
    for (const name of ['prov', 'run', 'err']) {
      const v = await f.get(name);
      const record = (await f.store.getDeployment(name))!;
      expect(v.revision_id).toBe(record.revision_id);
      const ctxRevision = (
        f.runtime as unknown as {
          deploymentRef(id: string): { getSnapshot(): { context: { revisionId: string } } };
        }
      )
        .deploymentRef(v.id)
        .getSnapshot().context.revisionId;
      expect(ctxRevision).toBe(record.revision_id);
    }
  });

  it('a deployment whose snapshot is rejected at restore is quarantined: listed with the reason, a /ready warning, 409 on scale, and deletable', async (ctx) => {
    const opts = await options(ctx);
    let f = await start(opts);
    const d = await f.deploy({ name: 'echo', command: ECHO, replicas: 1, health_check: HEALTH });
    await running(f, 'echo', 1);
    await close(f);
    const c = new pg.Client({ connectionString: opts.databaseUrl });
    await c.connect();
    await c.query(
      `UPDATE actor_snapshots SET snapshot = jsonb_set(snapshot, '{_v}', '999') WHERE kind = 'deployment'`,
    );
    await c.end();
    f = await start(opts);
    const v = await f.get('echo');
    expect(v.reason).toMatch(/^quarantined: snapshot not restorable/);
    expect((await f.list()).find((x) => x.id === d.id)?.reason).toMatch(/quarantined/);
    const ready = await f.ready();
    expect(ready.ready).toBe(true);
    expect(ready.warnings?.[0]).toMatch(/"echo".*quarantined/);
    await expect(f.scale('echo', 2)).rejects.toMatchObject({ code: 'invalid_state' });
    await f.destroy('echo');
    const gone = await f.get('echo');
    expect(gone.state).toBe('TERMINATED');
    expect(gone.replicas.every((r) => r.state === 'TERMINATED')).toBe(true);
    expect((await f.ready()).warnings).toBeUndefined();
    expect(f.runtime.actorStates().size).toBe(0);
  });
});

describe('a start that fails after restore', () => {
  it('leaves the replicas it adopted running, so the next start adopts them and no replica id starts twice', async (ctx) => {
    // keepReplicas: the replica outlives its coordinator, as after a crash.
    const opts = await options(ctx, { keepReplicas: true });
    const first = await start(opts);
    await first.deploy({ name: 'echo', command: ECHO, replicas: 1, health_check: HEALTH });
    const live = await running(first, 'echo', 1);
    await close(first);
    // The proxy port is taken, so this start fails after the runtime restored and adopted.
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as AddressInfo).port;
    try {
      await expect(
        createFlotilla({ ...opts, keepReplicas: false, proxy: { port } }),
      ).rejects.toThrow();
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
    const again = await start({ ...opts, keepReplicas: false });
    const after = await running(again, 'echo', 1);
    expect(after.replicas.map((r) => r.id)).toEqual(live.replicas.map((r) => r.id));
    expect(after.replicas[0]!.endpoint).toBe(live.replicas[0]!.endpoint);
    expect(after.replicas[0]!.restarts).toBe(live.replicas[0]!.restarts);
    // The process backend logs every start of a replica: one, however many coordinators ran.
    const log = readFileSync(
      join(opts.dataDir!, 'replicas', live.replicas[0]!.id, 'output.log'),
      'utf8',
    );
    expect(log.match(/starting replica/g)).toHaveLength(1);
  });
});
