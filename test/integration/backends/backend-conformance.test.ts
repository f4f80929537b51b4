/**
 * One conformance suite for the ReplicaBackend port (src/backends/backend.ts), run against every
 * adapter: the process backend, the Docker backend (where an engine answers; skipped with the
 * reason otherwise) and the test fake (test/harness/fake-backend.ts), which the runtime tests
 * stand on and so must keep the same contract.
 *
 * Every replica is the echo server: run from its one-file bundle by the process backend, from the
 * locally built image by the Docker backend, in-process by the fake. A "coordinator restart" is
 * a second backend instance over the same machine state (data dir, container labels, FakeMachine).
 */
import { spawn } from 'node:child_process';
import Dockerode from 'dockerode';
import { describe, expect, it, onTestFinished, type TestContext } from 'vitest';
import type { ReplicaBackend, ReplicaExit, ReplicaHandle } from '../../../src/backends/backend.ts';
import { REPLICA_ID_LABEL } from '../../../src/backends/backend.ts';
import {
  createDockerBackend,
  dockerUnavailableReason,
} from '../../../src/backends/docker-backend.ts';
import { readProcUsage } from '../../../src/backends/proc.ts';
import { createProcessBackend } from '../../../src/backends/process-backend.ts';
import { httpUrl } from '../../../src/domain/host.ts';
import type { ResourceSlots, SessionSpec } from '../../../src/domain/session.ts';
import { ECHO_ENTRY, echoBundleFile, echoImage } from '../../harness/docker-image.ts';
import { FakeBackend, FakeMachine } from '../../harness/fake-backend.ts';
import {
  httpStatus,
  isAlive,
  killAllWith,
  newMarker,
  processesWith,
  sessionSpec,
  tempDir,
  waitFor,
} from './helpers.ts';

const MARKER = newMarker();
/** A process that spins one core for a minute (the burn test's same-run baseline). */
const SPIN_60S = 'const end = Date.now() + 60000; while (Date.now() < end) {}';
const dockerUnavailable = await dockerUnavailableReason();
if (dockerUnavailable) {
  console.log(`ReplicaBackend conformance: docker adapter skipped: ${dockerUnavailable}`);
}

/** How the echo server learns its port: `--port {port}` in its argv, or `PORT`. */
type PortFrom = 'argv' | 'env';

interface World {
  /** A backend over this test's machine state; a second call is a restarted coordinator's. */
  open(opts?: { capacity?: Partial<ResourceSlots> }): Promise<ReplicaBackend>;
  /** The echo server as this adapter runs it. */
  echo(replicaId: string, opts?: { resources?: ResourceSlots; portFrom?: PortFrom }): SessionSpec;
  /** Kills the replica's session from outside (kill -9, docker kill); resolves once it is dead. */
  kill(handle: ReplicaHandle): Promise<void>;
  /** Sessions of this replica alive on the machine: processes, containers, fake sessions. */
  sessions(replicaId: string): Promise<number>;
}

interface Adapter {
  name: 'process' | 'docker' | 'fake';
  unavailable: string | null;
  world(ctx: TestContext, testMarker: string): Promise<World>;
}

const DEFAULT_RESOURCES: ResourceSlots = { cpu: 0.1, mem: 64 * 1024 * 1024, gpu: 0 };
/** Ends each replica's argv, so `ps` finds exactly one replica's processes. */
const modelOf = (replicaId: string) => `${replicaId}-model`;

/** Closes what a test opened, stopping replicas, whatever the test left behind. */
function closeAtEnd(backends: ReplicaBackend[]): void {
  onTestFinished(async () => {
    await Promise.all(backends.map((b) => b.close({ stopReplicas: true, graceMs: 1000 })));
  });
}

const adapters: Adapter[] = [
  {
    name: 'process',
    unavailable: null,
    async world() {
      const dataDir = tempDir();
      const bundle = await echoBundleFile();
      const opened: ReplicaBackend[] = [];
      closeAtEnd(opened);
      onTestFinished(() => {
        killAllWith(MARKER);
      });
      return {
        async open(opts = {}) {
          const b = await createProcessBackend({ dataDir, ...opts });
          opened.push(b);
          return b;
        },
        echo(replicaId, opts = {}) {
          const port = opts.portFrom === 'env' ? [] : ['--port', '{port}'];
          return sessionSpec([process.execPath, bundle, ...port, '--model', modelOf(replicaId)], {
            resources: opts.resources ?? DEFAULT_RESOURCES,
          });
        },
        async kill(h) {
          process.kill(h.pid!, 'SIGKILL');
          await waitFor(`${h.replicaId} to die`, () => !isAlive(h.pid!), 5000);
        },
        async sessions(replicaId) {
          return processesWith(modelOf(replicaId)).length;
        },
      };
    },
  },
  {
    name: 'docker',
    unavailable: dockerUnavailable,
    async world(_ctx, testMarker) {
      const image = await echoImage();
      const docker = new Dockerode();
      const scope = testMarker;
      const opened: ReplicaBackend[] = [];
      closeAtEnd(opened);
      onTestFinished(async () => {
        const left = await docker.listContainers({
          all: true,
          filters: { label: [`flotilla.scope=${scope}`] },
        });
        await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true })));
      });
      const ofReplica = (replicaId: string, all: boolean) =>
        docker.listContainers({
          all,
          filters: { label: [`${REPLICA_ID_LABEL}=${replicaId}`, `flotilla.scope=${scope}`] },
        });
      return {
        async open(opts = {}) {
          const b = await createDockerBackend({ ...opts, scope, pullImages: false });
          opened.push(b);
          return b;
        },
        echo(replicaId, opts = {}) {
          const port = opts.portFrom === 'env' ? [] : ['--port', '{port}'];
          return sessionSpec(
            ['node', ECHO_ENTRY, ...port, '--host', '0.0.0.0', '--model', modelOf(replicaId)],
            { image, port: 8000, resources: opts.resources ?? DEFAULT_RESOURCES },
          );
        },
        async kill(h) {
          await docker.getContainer(h.containerId!).kill({ signal: 'SIGKILL' });
          await waitFor(
            `${h.replicaId}'s container to stop`,
            async () => !(await docker.getContainer(h.containerId!).inspect()).State.Running,
            10_000,
          );
        },
        async sessions(replicaId) {
          return (await ofReplica(replicaId, false)).length;
        },
      };
    },
  },
  {
    name: 'fake',
    unavailable: null,
    async world() {
      const machine = new FakeMachine();
      const opened: ReplicaBackend[] = [];
      closeAtEnd(opened);
      return {
        async open(opts = {}) {
          const b = new FakeBackend({ machine, serve: true, ...opts });
          opened.push(b);
          return b;
        },
        echo(replicaId, opts = {}) {
          const port = opts.portFrom === 'env' ? [] : ['--port', '{port}'];
          return sessionSpec(['echo-server', ...port, '--model', modelOf(replicaId)], {
            resources: opts.resources ?? DEFAULT_RESOURCES,
          });
        },
        async kill(h) {
          machine.die(h.replicaId, 137, 'SIGKILL');
        },
        async sessions(replicaId) {
          return machine.running(replicaId);
        },
      };
    },
  },
];

/** The replica at `h.url` is up and is `h.replicaId` (the echo server reports FLOTILLA_REPLICA_ID). */
async function answers(h: ReplicaHandle): Promise<boolean> {
  try {
    const res = await fetch(`${h.url}/health`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status === 200 && res.headers.get('x-echo-replica') === h.replicaId;
  } catch {
    return false;
  }
}

function waitAnswering(h: ReplicaHandle): Promise<boolean> {
  return waitFor(`${h.replicaId} answering at ${h.url}`, () => answers(h), 60_000, 50);
}

/** Identifies one session of a replica: a restarted replica is a different one. */
function sessionKey(h: ReplicaHandle): string {
  return `${h.pid ?? ''}|${h.containerId ?? ''}|${h.startedAt}`;
}

const byId = (a: ReplicaHandle, b: ReplicaHandle) => a.replicaId.localeCompare(b.replicaId);

let testCount = 0;

describe.each(adapters)('ReplicaBackend conformance: $name', (adapter) => {
  describe.skipIf(adapter.unavailable !== null)(adapter.name, () => {
    /** A fresh world and replica ids unique to this test. */
    async function setup(ctx: TestContext) {
      const testMarker = `${MARKER}-${++testCount}`;
      const world = await adapter.world(ctx, testMarker);
      const id = (name: string) => `${testMarker}-${name}`;
      return { world, id };
    }

    it('start returns the URL where the replica answers, its port given through {port}', async (ctx) => {
      const { world, id } = await setup(ctx);
      const b = await world.open();
      const h = await b.start(id('argv'), world.echo(id('argv')));
      expect(h.replicaId).toBe(id('argv'));
      expect(h.url).toBe(httpUrl(h.host, h.port));
      await waitAnswering(h);
      expect(await b.status(h.replicaId)).toBe('running');
      expect(await b.list()).toEqual([h]);
    });

    it('a replica that reads its port from PORT answers at the URL start returns', async (ctx) => {
      const { world, id } = await setup(ctx);
      const b = await world.open();
      const h = await b.start(id('env'), world.echo(id('env'), { portFrom: 'env' }));
      await waitAnswering(h);
    });

    it('starting one replica id twice, at once or later, adopts the running session: same handle, one session', async (ctx) => {
      const { world, id } = await setup(ctx);
      const b = await world.open();
      const spec = world.echo(id('twice'));
      const [first, concurrent] = await Promise.all([
        b.start(id('twice'), spec),
        b.start(id('twice'), spec),
      ]);
      expect(concurrent).toEqual(first);
      await waitAnswering(first);
      expect(await b.start(id('twice'), spec)).toEqual(first);
      expect(await world.sessions(id('twice'))).toBe(1);
      expect(await b.list()).toHaveLength(1);
    });

    it('stop ends the session and is idempotent; stopping or asking about an unknown replica is harmless', async (ctx) => {
      const { world, id } = await setup(ctx);
      const b = await world.open();
      const exits: ReplicaExit[] = [];
      b.onExit((e) => exits.push(e));
      const h = await b.start(id('s'), world.echo(id('s')));
      await waitAnswering(h);
      await b.stop(h.replicaId, 2000);
      expect(await httpStatus(`${h.url}/health`)).toBe(0);
      expect(await world.sessions(h.replicaId)).toBe(0);
      expect(await b.status(h.replicaId)).toBe('exited');
      expect(await b.list()).toEqual([]);
      await b.stop(h.replicaId, 2000);
      await b.stop(id('never-started'), 2000);
      expect(await b.status(id('never-started'))).toBe('unknown');
      expect(await b.logs(id('never-started'))).toBe('');
      expect(exits, 'a stopped replica is not reported as dying on its own').toEqual([]);
    });

    it('a session killed from outside is reported once through onExit with its code or signal, and a new start replaces it', async (ctx) => {
      const { world, id } = await setup(ctx);
      const b = await world.open();
      const exits: ReplicaExit[] = [];
      b.onExit((e) => exits.push(e));
      const [victim, stopped] = await Promise.all([
        b.start(id('victim'), world.echo(id('victim'))),
        b.start(id('stopped'), world.echo(id('stopped'))),
      ]);
      await Promise.all([waitAnswering(victim), waitAnswering(stopped)]);
      await b.stop(stopped.replicaId, 2000);
      const killedAt = Date.now();
      await world.kill(victim);
      const exit = await waitFor('the exit report', () => exits[0], 10_000, 5);
      console.log(`[${adapter.name}] kill reported after ${exit.at - killedAt} ms`);
      expect(exit.replicaId).toBe(victim.replicaId);
      expect(exit.code !== null || exit.signal !== null, JSON.stringify(exit)).toBe(true);
      // The port's contract: within one second of the death.
      expect(exit.at - killedAt).toBeLessThan(1000);
      expect(await b.status(victim.replicaId)).toBe('exited');
      expect(await b.list()).toEqual([]);

      const fresh = await b.start(victim.replicaId, world.echo(victim.replicaId));
      expect(sessionKey(fresh)).not.toBe(sessionKey(victim));
      await waitAnswering(fresh);
      expect(await world.sessions(victim.replicaId)).toBe(1);
      expect(exits.map((e) => e.replicaId)).toEqual([victim.replicaId]);
    });

    it('reserves resource slots per replica, refuses one that does not fit naming the slot, and releases on stop and on death', async (ctx) => {
      const { world, id } = await setup(ctx);
      const b = await world.open({ capacity: { cpu: 1, mem: 2 ** 30, gpu: 0 } });
      const exits: ReplicaExit[] = [];
      b.onExit((e) => exits.push(e));
      const half = { cpu: 0.5, mem: 64 * 1024 * 1024, gpu: 0 };
      const a = await b.start(id('a'), world.echo(id('a'), { resources: half }));
      const c = await b.start(id('b'), world.echo(id('b'), { resources: half }));
      expect(b.capacity().total).toEqual({ cpu: 1, mem: 2 ** 30, gpu: 0 });
      expect(b.capacity().used).toEqual({ cpu: 1, mem: 128 * 1024 * 1024, gpu: 0 });
      await expect(
        b.start(id('c'), world.echo(id('c'), { resources: half })),
      ).rejects.toMatchObject({
        code: 'insufficient_resources',
        message: 'insufficient cpu: requested 0.5, free 0',
      });
      await expect(
        b.start(id('gpu'), world.echo(id('gpu'), { resources: { cpu: 0, mem: 0, gpu: 2 } })),
      ).rejects.toMatchObject({
        code: 'insufficient_resources',
        message: 'insufficient gpu: requested 2, free 0',
      });
      expect(await b.status(id('c'))).toBe('unknown');
      expect(await world.sessions(id('c'))).toBe(0);
      expect(await world.sessions(id('gpu'))).toBe(0);

      await b.stop(a.replicaId, 2000);
      expect(b.capacity().used.cpu).toBeCloseTo(0.5);
      await waitAnswering(c);
      await world.kill(c);
      await waitFor('the death to be noticed', () => exits.length === 1, 10_000);
      expect(b.capacity().used).toEqual({ cpu: 0, mem: 0, gpu: 0 });
      await b.start(id('c'), world.echo(id('c'), { resources: half }));
      expect(b.capacity().used.cpu).toBeCloseTo(0.5);
    });

    it('close({ stopReplicas: true }) ends every replica, and a new instance finds none', async (ctx) => {
      const { world, id } = await setup(ctx);
      const b = await world.open();
      const handles = await Promise.all(['x', 'y'].map((n) => b.start(id(n), world.echo(id(n)))));
      await Promise.all(handles.map(waitAnswering));
      await b.close({ stopReplicas: true, graceMs: 2000 });
      for (const h of handles) {
        expect(await httpStatus(`${h.url}/health`)).toBe(0);
        expect(await world.sessions(h.replicaId)).toBe(0);
      }
      const next = await world.open();
      expect(await next.list()).toEqual([]);
      expect(next.capacity().used).toEqual({ cpu: 0, mem: 0, gpu: 0 });
    });

    it('after close({ stopReplicas: false }) replicas keep answering, and a new instance adopts them with the same handles and their slots', async (ctx) => {
      const { world, id } = await setup(ctx);
      const first = await world.open();
      const firstExits: ReplicaExit[] = [];
      first.onExit((e) => firstExits.push(e));
      const half = { cpu: 0.5, mem: 64 * 1024 * 1024, gpu: 0 };
      const before = (
        await Promise.all(
          ['p', 'q'].map((n) => first.start(id(n), world.echo(id(n), { resources: half }))),
        )
      ).sort(byId);
      await Promise.all(before.map(waitAnswering));
      await first.close({ stopReplicas: false });
      for (const h of before) expect(await answers(h)).toBe(true);

      // The coordinator restarts: a new instance over the same machine.
      const second = await world.open();
      const exits: ReplicaExit[] = [];
      second.onExit((e) => exits.push(e));
      expect((await second.list()).sort(byId)).toEqual(before);
      expect(await second.start(before[0]!.replicaId, world.echo(before[0]!.replicaId))).toEqual(
        before[0],
      );
      expect(await world.sessions(before[0]!.replicaId)).toBe(1);
      expect(second.capacity().used.cpu).toBeCloseTo(1);
      expect(await second.status(before[1]!.replicaId)).toBe('running');

      // The new instance watches the adopted replicas; the closed one no longer watches.
      await world.kill(before[1]!);
      await waitFor('the adopted replica death report', () => exits[0], 10_000, 5);
      expect(exits.map((e) => e.replicaId)).toEqual([before[1]!.replicaId]);
      expect(firstExits).toEqual([]);
      expect(second.capacity().used.cpu).toBeCloseTo(0.5);
    });

    it('a replica that died while no backend ran is reported to the next instance, and starts anew', async (ctx) => {
      const { world, id } = await setup(ctx);
      const first = await world.open();
      const h = await first.start(id('lost'), world.echo(id('lost')));
      await waitAnswering(h);
      await first.close({ stopReplicas: false });
      await world.kill(h);

      const second = await world.open();
      expect(await second.status(h.replicaId)).toBe('exited');
      expect(await second.list()).toEqual([]);
      expect(second.capacity().used).toEqual({ cpu: 0, mem: 0, gpu: 0 });
      const exits: ReplicaExit[] = [];
      second.onExit((e) => exits.push(e));
      await waitFor('the queued exit report', () => exits.length >= 1, 10_000);
      expect(exits[0]!.replicaId).toBe(h.replicaId);

      const fresh = await second.start(h.replicaId, world.echo(h.replicaId));
      expect(sessionKey(fresh)).not.toBe(sessionKey(h));
      await waitAnswering(fresh);
      expect(await world.sessions(h.replicaId)).toBe(1);
    });

    it('usage of a running replica: CPU seconds that do not go down, resident memory, its requested slots; null when not running', async (ctx) => {
      const { world, id } = await setup(ctx);
      const b = await world.open();
      const resources: ResourceSlots = { cpu: 1, mem: 256 * 1024 * 1024, gpu: 0 };
      expect(await b.usage(id('never-started'))).toBeNull();
      const h = await b.start(id('u'), world.echo(id('u'), { resources }));
      await waitAnswering(h);
      const first = await b.usage(h.replicaId);
      expect(first).not.toBeNull();
      expect(first!.cpuSeconds).toBeGreaterThanOrEqual(0);
      expect(Number.isFinite(first!.cpuSeconds)).toBe(true);
      expect(first!.rssBytes).toBeGreaterThan(0);
      expect(first!.requested).toEqual(resources);
      const second = await b.usage(h.replicaId);
      expect(second!.cpuSeconds).toBeGreaterThanOrEqual(first!.cpuSeconds);
      await b.stop(h.replicaId, 2000);
      expect(await b.usage(h.replicaId)).toBeNull();
    });

    it('a replica spinning two processes (POST /admin/burn) uses more than half a core, or half of what a lone spinning process gets on this loaded machine', async (ctx) => {
      const { world, id } = await setup(ctx);
      const b = await world.open();
      const resources: ResourceSlots = { cpu: 1, mem: 256 * 1024 * 1024, gpu: 0 };
      const h = await b.start(id('burn'), world.echo(id('burn'), { resources }));
      await waitAnswering(h);
      const burn = (seconds: number) =>
        fetch(`${h.url}/admin/burn`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ seconds, cores: 2 }),
        });
      // The same-run baseline: one spinning process of our own, measured over the same window.
      const reference = spawn(process.execPath, ['-e', SPIN_60S], { stdio: 'ignore' });
      onTestFinished(async () => {
        reference.kill('SIGKILL');
        await burn(0).catch(() => {});
      });
      expect((await burn(60)).status).toBe(200);
      const refBefore = readProcUsage(reference.pid!)!;
      const before = (await b.usage(h.replicaId))!;
      const t0 = Date.now();
      // Measured over at least two seconds of wall time.
      await waitFor('two seconds of burning', () => Date.now() - t0 >= 2000, 5000, 100);
      const after = (await b.usage(h.replicaId))!;
      const refAfter = readProcUsage(reference.pid!)!;
      const wall = (Date.now() - t0) / 1000;
      const cores = (after.cpuSeconds - before.cpuSeconds) / wall;
      const lone = (refAfter.cpuSeconds - refBefore.cpuSeconds) / wall;
      console.log(
        `[${adapter.name}] burning replica used ${cores.toFixed(2)} cores; a lone spinning process ${lone.toFixed(2)} (ratio ${(cores / lone).toFixed(2)})`,
      );
      expect(cores).toBeGreaterThan(0.5 * Math.min(1, lone));
      expect((await burn(0)).status).toBe(200);
    }, 60_000);

    it('refuses a replica id outside the safe alphabet with a validation error', async (ctx) => {
      const { world } = await setup(ctx);
      const b = await world.open();
      await expect(b.start('../escape', world.echo('escape'))).rejects.toMatchObject({
        code: 'validation',
      });
      expect(await b.list()).toEqual([]);
    });
  });
});
