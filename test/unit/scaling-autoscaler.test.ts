import { describe, expect, it } from 'vitest';
import {
  Autoscaler,
  type ScalableDeployment,
  type ScalableState,
} from '../../src/scaling/autoscaler.ts';

/** One deployment on a virtual clock; `scale` moves its target as the runtime would. */
function setup(opts: { policy?: ScalableDeployment['policy']; state?: string; load: number }) {
  let clock = 1_000_000;
  const live: ScalableState = { state: opts.state ?? 'RUNNING', target: 2, healthy: 2 };
  const load = opts.load;
  const scaled: number[] = [];
  const d: ScalableDeployment = {
    id: 'd1',
    name: 'm',
    min_replicas: 1,
    max_replicas: 4,
    policy: 'policy' in opts ? opts.policy : { cooldown_period: 60 },
  };
  const scaler = new Autoscaler({
    deployments: () => [d],
    stateOf: (id) => (id === 'd1' ? live : null),
    metric: () => load,
    scale: async (_id, replicas) => {
      scaled.push(replicas);
      live.target = replicas;
      live.healthy = replicas;
    },
    now: () => clock,
  });
  return {
    scaler,
    scaled,
    advance: (ms: number) => (clock += ms),
  };
}

describe('autoscaler', () => {
  it('adds a replica when the load per HEALTHY replica is above the scale-up threshold', async () => {
    const { scaler, scaled } = setup({ load: 10 }); // 5 per replica > 2.4
    const events = await scaler.evaluate();
    expect(scaled).toEqual([3]);
    expect(events[0]).toMatchObject({ deployment_id: 'd1', from: 2, to: 3 });
    expect(events[0]?.at).toBe(new Date(1_000_000).toISOString());
  });

  it('does nothing again within the cooldown, and acts once it has passed (virtual clock)', async () => {
    const { scaler, scaled, advance } = setup({ load: 30 });
    await scaler.evaluate();
    advance(59_999);
    await scaler.evaluate();
    expect(scaled).toEqual([3]);
    advance(1);
    await scaler.evaluate();
    expect(scaled).toEqual([3, 4]);
  });

  it('removes a replica when the load is below the scale-down threshold, never below min', async () => {
    const { scaler, scaled, advance } = setup({ load: 0 });
    await scaler.evaluate();
    advance(60_000);
    await scaler.evaluate();
    advance(60_000);
    await scaler.evaluate();
    expect(scaled).toEqual([1]);
  });

  it('never goes above max_replicas', async () => {
    const { scaler, scaled, advance } = setup({ load: 1_000 });
    for (let i = 0; i < 5; i++) {
      await scaler.evaluate();
      advance(60_000);
    }
    expect(scaled).toEqual([3, 4]);
  });

  it('leaves deployments without a policy, not RUNNING, or without a metric alone', async () => {
    const noPolicy = setup({ load: 100, policy: undefined });
    await noPolicy.scaler.evaluate();
    expect(noPolicy.scaled).toEqual([]);
    const notRunning = setup({ load: 100, state: 'PROVISIONING' });
    await notRunning.scaler.evaluate();
    expect(notRunning.scaled).toEqual([]);
    const s = new Autoscaler({
      deployments: () => [
        { id: 'x', name: 'x', min_replicas: 0, max_replicas: 5, policy: { cooldown_period: 0 } },
      ],
      stateOf: () => ({ state: 'RUNNING', target: 1, healthy: 1 }),
      metric: () => null,
      scale: async () => {
        throw new Error('must not scale');
      },
      now: () => 0,
    });
    expect(await s.evaluate()).toEqual([]);
  });

  it('tells scaling listeners, and forgets the cooldown of a deployment that is gone', async () => {
    const { scaler, scaled } = setup({ load: 30 });
    const heard: number[] = [];
    scaler.onScaling((e) => heard.push(e.to));
    await scaler.evaluate();
    scaler.forget('d1');
    await scaler.evaluate();
    expect(scaled).toEqual([3, 4]);
    expect(heard).toEqual([3, 4]);
  });
});
