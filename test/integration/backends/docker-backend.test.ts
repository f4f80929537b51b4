/**
 * Docker backend against a real engine, with the echo server image built locally
 * (test/harness/docker-image.ts; no registry needed). Where no Docker engine answers these tests
 * are skipped, and the reason is printed (the only skip our suite allows). The contract every
 * backend shares is in backend-conformance.test.ts; this file holds what is Docker's own.
 */
import Dockerode from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import type { ReplicaBackend, ReplicaExit } from '../../../src/backends/backend.ts';
import { REPLICA_ID_LABEL } from '../../../src/backends/backend.ts';
import {
  createDockerBackend,
  demuxDockerLogs,
  dockerUnavailableReason,
} from '../../../src/backends/docker-backend.ts';
import { FlotillaError } from '../../../src/domain/errors.ts';
import { ECHO_ENTRY, echoImage } from '../../harness/docker-image.ts';
import { httpStatus, newMarker, sessionSpec, waitFor } from './helpers.ts';

const unavailable = await dockerUnavailableReason();
if (unavailable) console.log(`docker backend tests skipped: ${unavailable}`);

const IMAGE = unavailable ? '' : await echoImage();
const MARKER = newMarker();
const backends: ReplicaBackend[] = [];

/** The echo server in its image, listening on {port} (8000) on every interface of the container. */
function echoSpec(overrides: Parameters<typeof sessionSpec>[1] = {}) {
  return sessionSpec(['node', ECHO_ENTRY, '--port', '{port}', '--host', '0.0.0.0'], {
    runtime_variant: 'custom',
    image: IMAGE,
    port: 8000,
    resources: { cpu: 0.25, mem: 64 * 1024 * 1024, gpu: 0 },
    ...overrides,
  });
}

async function backend(opts: Parameters<typeof createDockerBackend>[0] = {}) {
  // Scoped to this file, so a backend here never adopts another test file's containers.
  const b = await createDockerBackend({ scope: MARKER, pullImages: false, ...opts });
  backends.push(b);
  return b;
}

/** Containers of this test file, running or not. */
async function ourContainers(): Promise<Dockerode.ContainerInfo[]> {
  const all = await new Dockerode().listContainers({
    all: true,
    filters: { label: [REPLICA_ID_LABEL] },
  });
  return all.filter((c) => c.Labels[REPLICA_ID_LABEL]?.startsWith(MARKER));
}

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.close({ stopReplicas: true, graceMs: 1000 })));
  if (unavailable) return;
  for (const c of await ourContainers()) {
    await new Dockerode().getContainer(c.Id).remove({ force: true });
  }
});

describe('demuxDockerLogs', () => {
  it('joins the payloads of multiplexed frames and passes TTY output through', () => {
    const frame = (type: number, text: string) => {
      const body = Buffer.from(text);
      const head = Buffer.alloc(8);
      head[0] = type;
      head.writeUInt32BE(body.length, 4);
      return Buffer.concat([head, body]);
    };
    expect(demuxDockerLogs(Buffer.concat([frame(1, 'out\n'), frame(2, 'err\n')]))).toBe(
      'out\nerr\n',
    );
    expect(demuxDockerLogs(Buffer.from('plain tty text\n'))).toBe('plain tty text\n');
  });
});

describe.skipIf(unavailable !== null)('docker backend', () => {
  it('starts labelled containers that answer on their published ports', async () => {
    const b = await backend();
    const ids = [0, 1].map((i) => `${MARKER}-a${i}`);
    const handles = await Promise.all(ids.map((id) => b.start(id, echoSpec())));
    for (const h of handles) {
      expect(h.containerId).toBeTruthy();
      await waitFor(
        `${h.replicaId} answering`,
        async () => (await httpStatus(`${h.url}/health`)) === 200,
        60_000,
      );
    }
    expect((await ourContainers()).map((c) => c.Labels[REPLICA_ID_LABEL]).sort()).toEqual(ids);
    const again = await b.start(ids[0]!, echoSpec());
    expect(again.containerId).toBe(handles[0]!.containerId);
  });

  it('reports a killed container through onExit within one second', async () => {
    const b = await backend();
    const exits: ReplicaExit[] = [];
    b.onExit((e) => exits.push(e));
    const h = await b.start(`${MARKER}-k`, echoSpec());
    const killedAt = Date.now();
    await new Dockerode().getContainer(h.containerId!).kill({ signal: 'SIGKILL' });
    const exit = await waitFor('the exit report', () => exits[0], 5000, 5);
    console.log(`docker kill reported after ${exit.at - killedAt} ms`);
    expect(exit.at - killedAt).toBeLessThan(1000);
    expect(exit.replicaId).toBe(h.replicaId);
    expect(await b.status(h.replicaId)).toBe('exited');
  });

  it('adopts running containers by label after a restart', async () => {
    const first = await backend();
    const h = await first.start(`${MARKER}-adopt`, echoSpec());
    await first.close({ stopReplicas: false });
    const second = await backend();
    expect((await second.list()).map((x) => x.containerId)).toContain(h.containerId);
    expect((await second.start(h.replicaId, echoSpec())).containerId).toBe(h.containerId);
    expect(await ourContainers()).toHaveLength(1);
    await second.stop(h.replicaId, 1000);
    expect(await ourContainers()).toHaveLength(0);
  });

  it('publishes the port on 127.0.0.1 only and applies the cpu and memory limits', async () => {
    const b = await backend();
    const h = await b.start(
      `${MARKER}-limits`,
      echoSpec({ resources: { cpu: 0.5, mem: 96 * 1024 * 1024, gpu: 0 } }),
    );
    const info = await new Dockerode().getContainer(h.containerId!).inspect();
    expect(info.HostConfig.PortBindings?.['8000/tcp']).toEqual([
      { HostIp: '127.0.0.1', HostPort: '' },
    ]);
    expect(info.NetworkSettings.Ports['8000/tcp']).toEqual([
      { HostIp: '127.0.0.1', HostPort: String(h.port) },
    ]);
    expect(h.host).toBe('127.0.0.1');
    expect(info.HostConfig.NanoCpus).toBe(500_000_000);
    expect(info.HostConfig.Memory).toBe(96 * 1024 * 1024);
    expect(info.Config.Labels).toMatchObject({
      [REPLICA_ID_LABEL]: h.replicaId,
      'flotilla.managed': 'true',
      'flotilla.scope': MARKER,
    });
    expect(info.Config.Env).toEqual(
      expect.arrayContaining(['PORT=8000', `FLOTILLA_REPLICA_ID=${h.replicaId}`]),
    );
    await waitFor('the replica answering', async () => {
      const res = await fetch(`${h.url}/v1/models`).catch(() => null);
      return res?.status === 200 ? res : null;
    });
    // The replica answers only on the loopback address it was published on.
    expect(await httpStatus(`http://127.0.0.2:${h.port}/health`, 1000)).toBe(0);
  });

  it("a backend of another scope neither lists nor stops this scope's containers", async () => {
    const mine = await backend();
    const h = await mine.start(`${MARKER}-scoped`, echoSpec());
    const other = await backend({ scope: `${MARKER}-other` });
    expect(await other.list()).toEqual([]);
    expect(await other.status(h.replicaId)).toBe('unknown');
    await other.close({ stopReplicas: true, graceMs: 1000 });
    expect(await mine.status(h.replicaId)).toBe('running');
    expect((await ourContainers()).map((c) => c.State)).toEqual(['running']);
  });

  it('does not start a container that does not fit and names the reason', async () => {
    const b = await backend({ capacity: { gpu: 0 } });
    const err = await b
      .start(`${MARKER}-gpu`, echoSpec({ resources: { cpu: 0.1, mem: 1024, gpu: 2 } }))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FlotillaError);
    expect(err).toMatchObject({ message: 'insufficient gpu: requested 2, free 0' });
    expect(await ourContainers()).toHaveLength(0);
  });
});
