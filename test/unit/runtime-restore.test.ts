import { describe, expect, it } from 'vitest';
import { initialTransition, SimulatedClock, transition } from 'xstate';
import {
  type DeploymentInput,
  deploymentMachineWithClock,
  replicaActorId,
} from '../../machines/deployment.ts';
import {
  reconcileSessions,
  restorableDeploymentRows,
  restoreDriftEvents,
  SNAPSHOT_SCHEMA_VERSION,
  SnapshotRejected,
} from '../../src/runtime/restore.ts';
import type { ActorSnapshotRow } from '../../src/store/store.ts';

function row(
  deploymentId: string,
  snapshot: unknown,
  kind: 'deployment' | 'replica' = 'deployment',
) {
  return {
    actor_id: `${kind}:${deploymentId}`,
    kind,
    parent_id: null,
    deployment_id: deploymentId,
    state: 'RUNNING',
    snapshot,
  } as ActorSnapshotRow;
}

const good = (id: string) => ({
  _v: SNAPSHOT_SCHEMA_VERSION,
  value: 'RUNNING',
  context: { deploymentId: id },
  children: {},
});

describe('restore: which stored rows are restored', () => {
  it('restores a valid deployment row without its schema stamp', () => {
    const { restorable, rejected } = restorableDeploymentRows([row('a', good('a'))], () => true);
    expect(rejected).toEqual([]);
    expect(restorable).toEqual([
      {
        deploymentId: 'a',
        snapshot: { value: 'RUNNING', context: { deploymentId: 'a' }, children: {} },
      },
    ]);
  });

  it('rejects a row of another schema version, an unknown state, or no children', () => {
    const rows = [
      row('old', { ...good('old'), _v: SNAPSHOT_SCHEMA_VERSION - 1 }),
      row('odd', { ...good('odd'), value: 'SLEEPING' }),
      row('bare', {
        _v: SNAPSHOT_SCHEMA_VERSION,
        value: 'RUNNING',
        context: { deploymentId: 'bare' },
      }),
      row('null', null),
    ];
    const { restorable, rejected } = restorableDeploymentRows(rows, () => true);
    expect(restorable).toEqual([]);
    expect(rejected.map((r) => r.deploymentId)).toEqual(['old', 'odd', 'bare', 'null']);
    for (const r of rejected) expect(r.err).toBeInstanceOf(SnapshotRejected);
  });

  it('skips rows of untracked deployments and rows of replicas or routes', () => {
    const rows = [row('a', good('a')), row('gone', good('gone')), row('a', good('a'), 'replica')];
    const { restorable } = restorableDeploymentRows(rows, (id) => id === 'a');
    expect(restorable.map((r) => r.deploymentId)).toEqual(['a']);
  });
});

describe('restore: reconciling sessions with the backend', () => {
  it('tells a replica whose session is gone, and stops a session no actor owns', async () => {
    const exited: string[] = [];
    const stopped: string[] = [];
    await reconcileSessions({
      replicas: () => [
        { replicaId: 'r1', deploymentId: 'd', revisionId: 'v', state: 'HEALTHY' },
        { replicaId: 'r2', deploymentId: 'd', revisionId: 'v', state: 'UNHEALTHY' },
        { replicaId: 'r3', deploymentId: 'd', revisionId: 'v', state: 'STARTING' },
      ],
      resume: async () => null,
      sessionResumed: () => {},
      backend: {
        status: async (id) => (id === 'r1' ? 'running' : 'exited'),
        list: async () => [{ replicaId: 'r1' }, { replicaId: 'orphan' }] as never,
        stop: async (id) => {
          stopped.push(id);
        },
      },
      sessionExited: (id) => exited.push(id),
      warn: () => {},
    });
    expect(exited).toEqual(['r2']);
    expect(stopped).toEqual(['orphan']);
  });
});

describe('restore: a restored deployment behind its stored row (a command cut by a crash)', () => {
  const input: DeploymentInput = {
    deploymentId: 'd1',
    name: 'echo',
    revisionId: 'v1',
    replicas: 2,
    min_replicas: 0,
    max_replicas: 5,
    settings: { health: { healthy_threshold: 1, unhealthy_threshold: 2, startup_timeout_s: 60 } },
  };
  const machine = deploymentMachineWithClock(new SimulatedClock());

  /** A deployment RUNNING on v1 with two HEALTHY replicas, through XState's pure transition. */
  function runningOnV1() {
    let [snap] = initialTransition(machine, input);
    const step = (event: unknown) => {
      const [next, actions] = transition(machine, snap, event as never);
      snap = next;
      return actions;
    };
    step({ type: 'xstate.done.actor.generate', output: undefined, actorId: 'generate' });
    for (const replicaId of ['d1-r1', 'd1-r2']) {
      step({
        type: 'replica.state',
        replicaId,
        state: 'HEALTHY',
        endpoint: `http://127.0.0.1/${replicaId}`,
        reason: null,
        cause: null,
      });
    }
    // What restore reads back: the persisted snapshot through a JSON round trip.
    const persisted = JSON.parse(JSON.stringify(machine.getPersistedSnapshot(snap)));
    return { snap: machine.resolveState(persisted), step };
  }

  it('the row names a newer revision: the update is sent again and the rollout starts on it', () => {
    const { snap } = runningOnV1();
    expect(snap.value).toBe('RUNNING');
    expect(snap.context.revisionId).toBe('v1');
    const health = { healthy_threshold: 2, unhealthy_threshold: 3, startup_timeout_s: 30 };
    const events = restoreDriftEvents({ revision_id: 'v2', target_replicas: 2 }, snap, {
      health,
    });
    expect(events).toEqual([{ type: 'deployment.update', revisionId: 'v2', settings: { health } }]);
    const [after, actions] = transition(machine, snap, events[0]!);
    expect(after.context.revisionId).toBe('v2');
    // One new replica of v2 (the rolling update), old ones leave only once it is HEALTHY.
    expect(after.context.replicas['d1-r3']).toMatchObject({ revisionId: 'v2', state: 'STARTING' });
    const spawned = actions
      .filter((a) => a.type === 'xstate.spawnChild')
      .map((a) => a.params as unknown as { id: string; input: { revisionId?: string } });
    expect(spawned.find((p) => p.id === replicaActorId('d1-r3'))?.input.revisionId).toBe('v2');
    expect(after.context.replicas['d1-r1']?.leaving).toBe(false);
  });

  it('the row names another target: the scale is sent again', () => {
    const { snap } = runningOnV1();
    const events = restoreDriftEvents({ revision_id: 'v1', target_replicas: 3 }, snap);
    expect(events).toEqual([{ type: 'deployment.scale', replicas: 3 }]);
    const [after] = transition(machine, snap, events[0]!);
    expect(after.context.target).toBe(3);
    expect(Object.keys(after.context.replicas)).toContain('d1-r3');
  });

  it('nothing is sent when the row and the actor agree, nor to a deployment being destroyed', () => {
    const { snap } = runningOnV1();
    expect(restoreDriftEvents({ revision_id: 'v1', target_replicas: 2 }, snap)).toEqual([]);
    const [destroying] = transition(machine, snap, { type: 'deployment.delete' });
    expect(restoreDriftEvents({ revision_id: 'v2', target_replicas: 3 }, destroying)).toEqual([]);
  });
});
