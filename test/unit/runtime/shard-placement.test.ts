import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { shardActorId } from '../../../machines/coordinator.ts';
import { deploymentActorId } from '../../../machines/deployment.ts';
import { provideEffects } from '../../../src/runtime/provide-effects.ts';
import { MAX_DEPLOYMENTS_PER_SHARD, ShardPlacement } from '../../../src/runtime/shard-placement.ts';
import { testDeploymentInput, testEffectPorts } from '../../harness/effect-ports.ts';

const ids = (n: number, prefix = 'd') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe('shard placement', () => {
  it('never puts more than 32 deployments on a shard, opening shards as the fleet grows', () => {
    const p = new ShardPlacement(4);
    for (const id of ids(1_000)) p.place(id);
    expect(p.count).toBe(Math.ceil(1_000 / MAX_DEPLOYMENTS_PER_SHARD));
    for (let i = 0; i < p.count; i++) expect(p.sizeOf(i)).toBeLessThanOrEqual(32);
  });

  it('keeps a placed deployment where it is, and refills the room a release leaves', () => {
    const p = new ShardPlacement(1, [], 2);
    expect([p.place('a'), p.place('b'), p.place('c')]).toEqual([0, 0, 1]);
    expect(p.place('a')).toBe(0);
    expect(p.release('b')).toBe(0);
    expect(p.release('b')).toBeUndefined();
    expect(p.shardOf('b')).toBeUndefined();
    // Shard 0 has room again: it is filled before a new shard is opened.
    expect(p.place('d')).toBe(0);
    expect(p.place('e')).toBe(1);
    expect(p.place('f')).toBe(2);
    expect(p.count).toBe(3);
  });

  it('spreads a restored fleet over enough shards, keeping the configured count as a minimum', () => {
    expect(new ShardPlacement(4, ids(10)).count).toBe(4);
    const big = new ShardPlacement(4, ids(10_000));
    expect(big.count).toBe(Math.ceil(10_000 / 32));
    for (let i = 0; i < big.count; i++) expect(big.sizeOf(i)).toBeLessThanOrEqual(32);
    // Round robin: every shard holds 31 or 32, so new deployments find room at once.
    expect(new Set(Array.from({ length: big.count }, (_, i) => big.sizeOf(i)))).toEqual(
      new Set([31, 32]),
    );
    expect(big.place('new')).toBeLessThan(big.count);
  });
});

describe('coordinator: shards named by the placement', () => {
  const input = (id: string) => testDeploymentInput(id, 0);

  it('spawns a shard on the first add that names it, and removes a deployment from its shard', () => {
    const root = createActor(provideEffects(testEffectPorts), { input: { shards: 1 } }).start();
    root.send({ type: 'coordinator.deployment.add', input: input('a'), shard: 0 });
    root.send({ type: 'coordinator.deployment.add', input: input('b'), shard: 3 });
    // Adding again is a no-op (no second spawn of the same system id).
    root.send({ type: 'coordinator.deployment.add', input: input('b'), shard: 3 });
    expect(Object.keys(root.getSnapshot().children).sort()).toEqual([
      shardActorId(0),
      shardActorId(3),
    ]);
    expect(root.getSnapshot().context.shards).toBe(4);
    const shard3 = root.system.get(shardActorId(3));
    expect(Object.keys(shard3.getSnapshot().children)).toEqual([deploymentActorId('b')]);
    expect(root.system.get(deploymentActorId('b'))).toBeDefined();

    root.send({ type: 'coordinator.deployment.remove', deploymentId: 'b', shard: 3 });
    expect(Object.keys(shard3.getSnapshot().children)).toEqual([]);
    expect(root.system.get(deploymentActorId('b'))).toBeUndefined();
    // A shard that was never spawned: nothing to remove, nothing fails.
    root.send({ type: 'coordinator.deployment.remove', deploymentId: 'x', shard: 9 });
    root.stop();
  });
});
