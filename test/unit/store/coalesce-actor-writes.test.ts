import { describe, expect, it } from 'vitest';
import { FlotillaError } from '../../../src/domain/errors.ts';
import { type ActorWrite, coalesceActorWrites } from '../../../src/store/store.ts';

function write(
  actorId: string,
  expectedVersion: number,
  to: string,
  extra: Partial<ActorWrite> = {},
): ActorWrite {
  return {
    actorId,
    kind: 'replica',
    deploymentId: 'd-1',
    parentId: 'd-1',
    state: to,
    snapshot: { value: to },
    expectedVersion,
    transition: { from: null, to, event: `to.${to}`, reason: null, at: new Date(0) },
    ...extra,
  };
}

describe('coalesceActorWrites', () => {
  it('keeps one row per actor in first-seen order with its last snapshot', () => {
    const { rows } = coalesceActorWrites([
      write('b', 0, 'STARTING'),
      write('a', 4, 'HEALTHY'),
      write('b', 1, 'HEALTHY'),
    ]);
    expect(rows.map((r) => [r.actor_id, r.state, r.snapshot])).toEqual([
      ['b', 'HEALTHY', { value: 'HEALTHY' }],
      ['a', 'HEALTHY', { value: 'HEALTHY' }],
    ]);
  });

  it('checks the first expected version and stores the highest one plus one', () => {
    const chained = coalesceActorWrites([
      write('a', 3, 'X'),
      write('a', 4, 'Y'),
      write('a', 5, 'Z'),
    ]);
    expect(chained.rows[0]).toMatchObject({ expected_version: 3, new_version: 6 });
    // A writer that does not advance its version between queued writes still moves one step.
    const flat = coalesceActorWrites([write('a', 3, 'X'), write('a', 3, 'Y')]);
    expect(flat.rows[0]).toMatchObject({ expected_version: 3, new_version: 4 });
  });

  it('keeps every history row in batch order, across actors', () => {
    const { history } = coalesceActorWrites([
      write('a', 0, 'S1'),
      write('b', 0, 'S1'),
      write('a', 1, 'S2'),
      write('a', 2, 'S3', { transition: undefined }),
      write('b', 1, 'S2'),
    ]);
    expect(history.map((h) => `${h.seq}:${h.actor_id}:${h.to_state}`)).toEqual([
      '0:a:S1',
      '1:b:S1',
      '2:a:S2',
      '3:b:S2',
    ]);
    expect(history[0]?.at).toBe('1970-01-01T00:00:00.000Z');
  });

  it('projects the latest replica and route fields given, and marks state-only writes', () => {
    const { rows } = coalesceActorWrites([
      write('r', 0, 'STARTING', {
        replica: { revisionId: 'rev', endpoint: 'http://a', info: { pid: 1 } },
      }),
      write('r', 1, 'HEALTHY'),
      write('rt', 0, 'PENDING', { kind: 'route' }),
    ]);
    expect(rows[0]).toMatchObject({
      state: 'HEALTHY',
      has_replica: true,
      revision_id: 'rev',
      endpoint: 'http://a',
      info: { pid: 1 },
    });
    expect(rows[1]).toMatchObject({ has_route: false, has_replica: false });
  });

  it('remembers the reason of the last transition for the deployment row', () => {
    const { rows } = coalesceActorWrites([
      write('d-1', 0, 'PENDING', {
        kind: 'deployment',
        transition: { from: null, to: 'PENDING', event: 'e', reason: 'first', at: new Date(0) },
      }),
      write('d-1', 1, 'ERROR', {
        kind: 'deployment',
        transition: {
          from: 'PENDING',
          to: 'ERROR',
          event: 'e',
          reason: 'generator failed',
          at: new Date(0),
        },
      }),
    ]);
    expect(rows[0]).toMatchObject({ has_transition: true, transition_reason: 'generator failed' });
  });

  it('refuses one actor id used as two kinds in a batch', () => {
    expect(() =>
      coalesceActorWrites([write('x', 0, 'A'), write('x', 1, 'B', { kind: 'route' })]),
    ).toThrow(FlotillaError);
  });
});
