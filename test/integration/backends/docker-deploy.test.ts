/**
 * The echo server deployed as containers through the whole stack (runtime, prober, proxy) on the
 * Docker backend, with the image built locally (test/harness/docker-image.ts): ports published on
 * 127.0.0.1, resource limits applied, a killed container detected and replaced, and a
 * coordinator restart that adopts the containers by label. Skipped, saying why, where no Docker
 * engine answers.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Dockerode from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import { REPLICA_ID_LABEL } from '../../../src/backends/backend.ts';
import {
  createDockerBackend,
  dockerUnavailableReason,
} from '../../../src/backends/docker-backend.ts';
import type { DeploymentRequest } from '../../../src/domain/deployment-request.ts';
import { createFlotilla, type Flotilla, type FlotillaOptions } from '../../../src/index.ts';
import { echoContainerCommand, echoImage } from '../../harness/docker-image.ts';
import { isolatedDatabase } from '../../harness/isolation.ts';
import { waitFor } from '../../harness/wait.ts';
import { newMarker } from './helpers.ts';

const unavailable = await dockerUnavailableReason();
if (unavailable) console.log(`docker deploy tests skipped: ${unavailable}`);

const MARKER = newMarker();
const docker = new Dockerode();
const open: Flotilla[] = [];

afterEach(async () => {
  for (const f of open.splice(0)) await f.close();
  if (unavailable) return;
  const left = await docker.listContainers({
    all: true,
    filters: { label: [`flotilla.scope=${MARKER}`] },
  });
  await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true })));
});

const HEALTH = {
  interval_s: 0.5,
  timeout_s: 1,
  healthy_threshold: 1,
  unhealthy_threshold: 2,
  startup_timeout_s: 60,
};

async function echoRequest(replicas: number): Promise<DeploymentRequest> {
  return {
    name: 'echo',
    runtime_variant: 'custom',
    image: await echoImage(),
    command: echoContainerCommand(),
    port: 8000,
    replicas,
    resource_slots: { cpu: 0.25, mem: '128m', gpu: 0 },
    health_check: HEALTH,
  };
}

async function flotillaOn(
  ctx: Parameters<typeof isolatedDatabase>[0],
  extra: Partial<FlotillaOptions> = {},
) {
  const { url } = await isolatedDatabase(ctx);
  const opts: FlotillaOptions = {
    databaseUrl: url,
    dataDir: mkdtempSync(join(tmpdir(), 'flotilla-docker-')),
    proxy: {},
    runtime: { healthCheckIntervalS: 0.25, shards: 2, deploymentDefaults: { backoff_base_s: 0.5 } },
    ...extra,
  };
  // Scoped to this file, so it never adopts the containers of another test file.
  const backend = await createDockerBackend({ scope: MARKER, pullImages: false });
  const f = await createFlotilla({ ...opts, backend });
  open.push(f);
  return { f, opts };
}

async function healthy(f: Flotilla, n: number) {
  return waitFor(
    async () => {
      const v = await f.get('echo');
      return v.state === 'RUNNING' && v.healthy_replicas === n && v.replicas.length === n
        ? v
        : null;
    },
    { timeoutMs: 90_000, intervalMs: 100, message: `echo with ${n} HEALTHY replicas` },
  );
}

/** Running containers of this file, by replica id. */
async function containers(): Promise<Map<string, string>> {
  const list = await docker.listContainers({
    filters: { label: [`flotilla.scope=${MARKER}`] },
  });
  return new Map(list.map((c) => [c.Labels[REPLICA_ID_LABEL]!, c.Id]));
}

describe.skipIf(unavailable !== null)('the echo server deployed as Docker containers', () => {
  it('serves through the proxy from containers published on 127.0.0.1 with their resource limits', async (ctx) => {
    const { f } = await flotillaOn(ctx);
    await f.deploy(await echoRequest(2));
    const v = await healthy(f, 2);
    const ids = v.replicas.map((r) => r.id).sort();
    const running = await containers();
    expect([...running.keys()].sort()).toEqual(ids);
    for (const id of running.values()) {
      const info = await docker.getContainer(id).inspect();
      const ports = info.NetworkSettings.Ports['8000/tcp'] ?? [];
      expect(ports.map((p) => p.HostIp)).toEqual(['127.0.0.1']);
      expect(info.HostConfig.NanoCpus).toBe(250_000_000);
      expect(info.HostConfig.Memory).toBe(128 * 1024 * 1024);
      expect(info.Config.Cmd?.slice(0, 2)).toEqual(['node', '/app/echo-server.mjs']);
    }
    const served = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${f.proxyUrl}/echo/v1/models`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { replica_id: string };
      expect(res.headers.get('x-flotilla-replica')).toBe(body.replica_id);
      served.add(body.replica_id);
    }
    expect([...served].sort()).toEqual(ids);
  });

  it('a killed container is detected and replaced through the runtime', async (ctx) => {
    const { f } = await flotillaOn(ctx);
    await f.deploy(await echoRequest(2));
    const v = await healthy(f, 2);
    const before = await containers();
    const victim = v.replicas[0]!.id;
    const t0 = performance.now();
    await docker.getContainer(before.get(victim)!).kill({ signal: 'SIGKILL' });
    await waitFor(
      async () => (await f.get('echo')).replicas.find((r) => r.id === victim)?.state !== 'HEALTHY',
      { timeoutMs: 10_000, intervalMs: 10, message: `${victim} to leave HEALTHY` },
    );
    console.log(
      `[docker] docker kill -> replica out of HEALTHY in ${(performance.now() - t0).toFixed(0)} ms`,
    );
    const back = await healthy(f, 2);
    expect(back.replicas.find((r) => r.id === victim)?.restarts).toBe(1);
    const after = await containers();
    expect(after.size).toBe(2);
    expect(after.get(victim)).toBeDefined();
    expect(after.get(victim)).not.toBe(before.get(victim));
    const other = v.replicas[1]!.id;
    expect(after.get(other)).toBe(before.get(other));
  });

  it('a coordinator restart adopts the containers by label: same containers, none started twice', async (ctx) => {
    const { f, opts } = await flotillaOn(ctx, { keepReplicas: true });
    await f.deploy(await echoRequest(2));
    const v = await healthy(f, 2);
    const before = await containers();
    expect(before.size).toBe(2);
    await f.close();
    open.splice(open.indexOf(f), 1);
    expect(await containers()).toEqual(before);

    const backend = await createDockerBackend({ scope: MARKER, pullImages: false });
    const g = await createFlotilla({ ...opts, keepReplicas: false, backend });
    open.push(g);
    const again = await healthy(g, 2);
    expect(again.replicas.map((r) => r.id).sort()).toEqual(v.replicas.map((r) => r.id).sort());
    expect(await containers()).toEqual(before);
    const all = await docker.listContainers({
      all: true,
      filters: { label: [`flotilla.scope=${MARKER}`] },
    });
    expect(all).toHaveLength(2);

    await g.destroy('echo');
    await waitFor(async () => (await g.get('echo')).state === 'TERMINATED', { timeoutMs: 60_000 });
    expect((await containers()).size).toBe(0);
  });
});
