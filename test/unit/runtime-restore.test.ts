import { describe, expect, it } from 'vitest';
import {
  reconcileSessions,
  restorableDeploymentRows,
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
