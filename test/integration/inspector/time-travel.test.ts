/**
 * GET /v1/deployments/{id}/state?at=: a scenario (deploy, kill a replica, scale, evict) is
 * recorded live through `subscribe`, and the states rebuilt from PostgreSQL history at every
 * recorded instant equal the live record; at quiet moments they also equal the actors' own
 * states (`runtime.actorStates()`).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../../src/runtime/runtime.ts';
import { waitFor } from '../../harness/wait.ts';
import { type InspectorFixture, inspectorFixture, probe } from './fixture.ts';

let f: InspectorFixture | null = null;
afterEach(async () => {
  await f?.close();
  f = null;
});

interface StateAt {
  state: string | null;
  actors: Array<{ actor_id: string; kind: string; state: string; parent: string | null }>;
}

describe('GET /v1/deployments/{id}/state?at=', () => {
  it('rebuilds every actor state at every recorded instant of a deploy, kill, scale and evict scenario', async (ctx) => {
    f = await inspectorFixture(ctx);
    const fx = f;
    const live: ChangeEvent[] = [];
    fx.flotilla.subscribe((e) => live.push(e));
    const checkpoints: Array<{ at: number; states: Map<string, string> }> = [];
    const quiet = async (what: string, check: () => Promise<boolean>) => {
      await waitFor(
        async () => {
          await probe(fx, 'ready');
          return check();
        },
        { timeoutMs: 20_000, message: what },
      );
      await fx.flotilla.runtime.writer.barrier();
      checkpoints.push({ at: Date.now(), states: fx.flotilla.runtime.actorStates() });
      // Two instants apart, so a checkpoint is never in the same millisecond as a transition.
      await waitFor(() => Date.now() > checkpoints[checkpoints.length - 1]!.at + 1);
    };
    const healthy = (n: number) => async () => {
      const v = await fx.flotilla.get('tt');
      return (
        v.state === 'RUNNING' &&
        v.replicas.filter((r) => r.state === 'HEALTHY').length === n &&
        v.routes.filter((r) => r.state === 'HEALTHY').length === n &&
        v.replicas.length === n
      );
    };

    // deploy
    const d = await fx.flotilla.deploy({ name: 'tt', model_path: 'examples/echo', replicas: 2 });
    await quiet('deployed: 2 HEALTHY', healthy(2));
    // kill a replica: it goes UNHEALTHY, restarts, and is HEALTHY again
    const victim = (await fx.flotilla.get('tt')).replicas[0]!.id;
    fx.backend.kill(victim);
    await waitFor(() =>
      live.some((e) => e.actor_id === `replica:${victim}` && e.to === 'UNHEALTHY'),
    );
    await quiet('recovered after the kill', healthy(2));
    // scale
    await fx.flotilla.scale('tt', 3);
    await quiet('scaled to 3 HEALTHY', healthy(3));
    // evict: one route fails its checks, the sweep removes it, a replacement comes
    const route = (await fx.flotilla.get('tt')).routes[0]!.id;
    await waitFor(
      async () => {
        await probe(fx, 'failing', [route]);
        return (
          (await fx.flotilla.get('tt')).routes.find((r) => r.id === route)?.state === 'UNHEALTHY'
        );
      },
      { message: 'route UNHEALTHY' },
    );
    await fx.flotilla.runtime.evictNow();
    await waitFor(
      () => live.some((e) => e.actor_id === `route:${route}` && e.to === 'TERMINATED'),
      {
        message: 'evicted route TERMINATED',
      },
    );
    await quiet('replacement HEALTHY after eviction', async () => {
      const ok = await healthy(3)();
      return ok && !(await fx.flotilla.get('tt')).routes.some((r) => r.id === route);
    });

    const mine = live.filter((e) => e.deployment_id === d.id);
    expect(mine.some((e) => e.kind === 'route' && e.to === 'TERMINATING')).toBe(true);
    expect(mine.length).toBeGreaterThan(20);
    const stateAt = async (t: number) => {
      const res = await fx.app.inject({
        url: `/v1/deployments/${d.id}/state?at=${encodeURIComponent(new Date(t).toISOString())}`,
      });
      expect(res.statusCode).toBe(200);
      const body = res.json() as StateAt;
      return new Map(body.actors.map((a) => [a.actor_id, a.state]));
    };

    // Every recorded instant: the fold of the live events up to it.
    const instants = [...new Set(mine.map((e) => Date.parse(e.at)))].sort((a, b) => a - b);
    for (const t of instants) {
      const expected = new Map<string, string>();
      for (const e of mine) if (Date.parse(e.at) <= t) expected.set(e.actor_id, e.to);
      expect(await stateAt(t), `at ${new Date(t).toISOString()}`).toEqual(expected);
    }
    // The tree: replicas under the deployment, each route under its replica.
    const now = (await fx.app.inject({ url: `/v1/deployments/${d.id}/state` })).json() as StateAt;
    const view = await fx.flotilla.get('tt');
    for (const r of view.routes) {
      expect(now.actors.find((a) => a.actor_id === `route:${r.id}`)?.parent).toBe(
        `replica:${r.replica_id}`,
      );
    }
    expect(
      now.actors
        .filter((a) => a.kind === 'replica')
        .every((a) => a.parent === `deployment:${d.id}`),
    ).toBe(true);
    // Before the first event nothing existed.
    expect((await stateAt(instants[0]! - 1)).size).toBe(0);
    // Quiet moments: the actors themselves (finished actors are gone from the tree).
    for (const c of checkpoints) {
      const rebuilt = await stateAt(c.at);
      const alive = new Map([...rebuilt].filter(([, s]) => s !== 'TERMINATED'));
      expect(alive).toEqual(c.states);
    }
  });

  it('answers 400 for a time that is not RFC 3339', async (ctx) => {
    f = await inspectorFixture(ctx);
    const d = await f.flotilla.deploy({ name: 'bad', model_path: 'examples/echo', replicas: 1 });
    const res = await f.app.inject({ url: `/v1/deployments/${d.id}/state?at=yesterday` });
    expect(res.statusCode).toBe(400);
    expect((res.json() as { error: { code: string } }).error.code).toBe('validation');
  });
});
