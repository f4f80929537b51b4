/**
 * Docker backend against a real engine. Where no Docker engine answers these tests are skipped,
 * and the reason is printed (the only skip our suite allows).
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
import { httpStatus, newMarker, sessionSpec, waitFor } from './helpers.ts';

const unavailable = await dockerUnavailableReason();
if (unavailable) console.log(`docker backend tests skipped: ${unavailable}`);

const IMAGE = 'python:3.12-alpine';
const MARKER = newMarker();
const backends: ReplicaBackend[] = [];

function pySpec(overrides: Parameters<typeof sessionSpec>[1] = {}) {
  return sessionSpec(['python3', '-m', 'http.server', '{port}'], {
    runtime_variant: 'custom',
    image: IMAGE,
    port: 8000,
    resources: { cpu: 0.25, mem: 64 * 1024 * 1024, gpu: 0 },
    ...overrides,
  });
}

async function backend(opts: Parameters<typeof createDockerBackend>[0] = {}) {
  const b = await createDockerBackend(opts);
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
    const handles = await Promise.all(ids.map((id) => b.start(id, pySpec())));
    for (const h of handles) {
      expect(h.containerId).toBeTruthy();
      await waitFor(
        `${h.replicaId} answering`,
        async () => (await httpStatus(h.url)) === 200,
        60_000,
      );
    }
    expect((await ourContainers()).map((c) => c.Labels[REPLICA_ID_LABEL]).sort()).toEqual(ids);
    const again = await b.start(ids[0]!, pySpec());
    expect(again.containerId).toBe(handles[0]!.containerId);
  });

  it('reports a killed container through onExit within one second', async () => {
    const b = await backend();
    const exits: ReplicaExit[] = [];
    b.onExit((e) => exits.push(e));
    const h = await b.start(`${MARKER}-k`, pySpec());
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
    const h = await first.start(`${MARKER}-adopt`, pySpec());
    await first.close({ stopReplicas: false });
    const second = await backend();
    expect((await second.list()).map((x) => x.containerId)).toContain(h.containerId);
    expect((await second.start(h.replicaId, pySpec())).containerId).toBe(h.containerId);
    expect(await ourContainers()).toHaveLength(1);
    await second.stop(h.replicaId, 1000);
    expect(await ourContainers()).toHaveLength(0);
  });

  it('does not start a container that does not fit and names the reason', async () => {
    const b = await backend({ capacity: { gpu: 0 } });
    const err = await b
      .start(`${MARKER}-gpu`, pySpec({ resources: { cpu: 0.1, mem: 1024, gpu: 2 } }))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FlotillaError);
    expect(err).toMatchObject({ message: 'insufficient gpu: requested 2, free 0' });
    expect(await ourContainers()).toHaveLength(0);
  });
});
