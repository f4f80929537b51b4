import { describe, expect, it } from 'vitest';
import { type AnyActorRef, createActor, SimulatedClock } from 'xstate';
import { deploymentActorId } from '../../../machines/deployment.ts';
import { actorStatesIn, settleRestoredTree } from '../../../src/runtime/actor-refs.ts';
import { provideEffects } from '../../../src/runtime/provide-effects.ts';
import { assembleCoordinatorSnapshot, internContextStrings } from '../../../src/runtime/restore.ts';
import { ShardPlacement } from '../../../src/runtime/shard-placement.ts';
import { testDeploymentInput, testEffectPorts } from '../../harness/effect-ports.ts';

const ports = testEffectPorts;
const input = (id: string) => testDeploymentInput(id);

/** Every actor of the tree, depth first, with the `options` XState keeps on each. */
function actorsOf(root: AnyActorRef): Array<AnyActorRef & { options?: { snapshot?: unknown } }> {
  const out: Array<AnyActorRef & { options?: { snapshot?: unknown } }> = [];
  const visit = (a: AnyActorRef) => {
    out.push(a);
    for (const c of Object.values((a.getSnapshot() as { children?: object }).children ?? {})) {
      visit(c as AnyActorRef);
    }
  };
  visit(root);
  return out;
}

/** Waits (with a deadline) until `cond` holds, letting the effects' promises settle. */
async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 2_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in 2 s');
    await new Promise((r) => setImmediate(r));
  }
}

describe('restore: what a restored tree keeps', () => {
  it('lets go of the persisted snapshots it was built from, reports every actor state, and the actors go on working', async () => {
    const clock = new SimulatedClock();
    const machine = provideEffects(ports, clock);
    const built = createActor(machine, { input: { shards: 2 } }).start();
    for (const id of ['a', 'b'])
      built.send({ type: 'coordinator.deployment.add', input: input(id), shard: 0 });
    // Each replica took its endpoint and its route started provisioning.
    await until(() =>
      ['a', 'b'].every((id) => {
        const d = built.system.get(deploymentActorId(id));
        const replicas = Object.values(d.getSnapshot().context.replicas) as Array<{
          routeState: string;
        }>;
        return replicas.length === 2 && replicas.every((r) => r.routeState === 'PROVISIONING');
      }),
    );
    const rows = ['a', 'b'].map((id) => ({
      deploymentId: id,
      snapshot: JSON.parse(
        JSON.stringify(built.system.get(deploymentActorId(id)).getPersistedSnapshot()),
      ),
    }));
    built.stop();

    const restored = createActor(machine, {
      input: { shards: 2 },
      snapshot: assembleCoordinatorSnapshot(new ShardPlacement(2), rows) as never,
    }).start();
    const actors = actorsOf(restored);
    // The coordinator, 2 shards, 2 deployments with a provisioning timer, 4 replicas with a
    // startup timer each, 4 routes.
    expect(actors).toHaveLength(1 + 2 + 2 * 2 + 4 * 2 + 4);
    expect(actors.filter((a) => a.options?.snapshot !== undefined)).toHaveLength(actors.length);
    const persistedBefore = rows.map((r) =>
      restored.system.get(deploymentActorId(r.deploymentId)).getPersistedSnapshot(),
    );

    const states = settleRestoredTree(restored);

    // The states it reports are those the runtime reads actor by actor.
    expect(Object.fromEntries(states)).toEqual(
      Object.fromEntries(actorStatesIn(restored.system, ['a', 'b'])),
    );
    expect(states.size).toBe(2 + 4 + 4);

    expect(actorsOf(restored).filter((a) => a.options?.snapshot !== undefined)).toEqual([]);
    expect(
      rows.map((r) =>
        restored.system.get(deploymentActorId(r.deploymentId)).getPersistedSnapshot(),
      ),
    ).toEqual(persistedBefore);
    // Still live: a scale spawns a replica, and a deadline still fires (the provisioning
    // timeout of 900 s moves `a` back to PENDING to retry).
    restored.system.get(deploymentActorId('a')).send({ type: 'deployment.scale', replicas: 3 });
    expect(
      Object.keys(restored.system.get(deploymentActorId('a')).getSnapshot().context.replicas),
    ).toHaveLength(3);
    clock.increment(900_001);
    await until(() => {
      const value = restored.system.get(deploymentActorId('a')).getSnapshot().value;
      return typeof value === 'object' && 'PENDING' in value;
    });
    restored.stop();
  });
});

describe('restore: strings of the restored contexts', () => {
  it("interning the contexts' strings leaves every value of the rows as it was", () => {
    // JSON.parse makes one string per occurrence; built apart so no two are the same object.
    const id = ['dep', 'loy', 'ment-1'].join('');
    const rows = [1, 2].map((n) => ({
      deploymentId: `${id}-${n}`,
      snapshot: JSON.parse(
        JSON.stringify({
          value: 'RUNNING',
          context: { deploymentId: id, replicas: { r1: { state: 'HEALTHY' } } },
          children: {
            'replica:r1': {
              snapshot: { value: 'HEALTHY', context: { deploymentId: id, state: 'HEALTHY' } },
            },
            timer: { snapshot: { status: 'active', input: { key: 'startup', deadline: 1 } } },
          },
        }),
      ),
    }));
    const before = JSON.stringify(rows);
    internContextStrings(rows);
    expect(JSON.stringify(rows)).toBe(before);
    // Which copy a string is cannot be seen from JS (bench/scale shows the memory it saves):
    // what restore reads must be unchanged, contexts, nested entries and timer inputs alike.
    for (const row of rows) {
      expect(row.snapshot.context.deploymentId).toBe(id);
      expect(row.snapshot.children['replica:r1'].snapshot.context.state).toBe('HEALTHY');
      expect(row.snapshot.children.timer.snapshot.input.key).toBe('startup');
    }
  });
});
