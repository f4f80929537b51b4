import { describe, expect, it } from 'vitest';
import { CapacityLedger, reservedSlots } from '../../../src/backends/capacity.ts';
import type { FlotillaError } from '../../../src/domain/errors.ts';
import { capacityRefusal } from '../../../src/runtime/capacity-wait.ts';
import { describeExit, previousReplicaIds } from '../../../src/runtime/crash-loop.ts';
import { nextBounds, sameRevision } from '../../../src/runtime/update-plan.ts';

describe('capacity waits', () => {
  it('words a ledger refusal as "cpu requested 1, free 0 of 2" and keeps its code', () => {
    const ledger = new CapacityLedger({ cpu: 2, mem: 0, gpu: 0 });
    ledger.reserve('a', { cpu: 2, mem: 0, gpu: 0 });
    let err: unknown;
    try {
      ledger.reserve('b', { cpu: 1, mem: 0, gpu: 0 });
    } catch (e) {
      err = e;
    }
    const worded = capacityRefusal(err, ledger.total) as FlotillaError;
    expect(worded.code).toBe('insufficient_resources');
    expect(worded.message).toBe('cpu requested 1, free 0 of 2 (insufficient cpu)');
  });

  it('reserves only declared cpu/mem and always GPUs; a session without `declared` reserves all', () => {
    const resources = { cpu: 1, mem: 1024, gpu: 1 };
    expect(reservedSlots({ resources, declared: [] })).toEqual({ cpu: 0, mem: 0, gpu: 1 });
    expect(reservedSlots({ resources, declared: ['cpu'] })).toEqual({ cpu: 1, mem: 0, gpu: 1 });
    expect(reservedSlots({ resources })).toEqual(resources);
  });
});

describe('crash loops', () => {
  it('describes an exit with its code and the last lines of output, without Flotilla lines', async () => {
    const backend = { logs: async () => '[flotilla] starting replica r1\nboom\n' };
    expect(await describeExit(backend, { replicaId: 'r1', code: 3, signal: null })).toBe(
      'exit code 3; output: boom',
    );
    expect(await describeExit(backend, { replicaId: 'r1', code: null, signal: 'SIGKILL' })).toBe(
      'killed by SIGKILL; output: boom',
    );
  });

  it('keeps the newest exited replicas for --previous, by replica id', async () => {
    const row = (n: number, state = 'TERMINATED') => ({
      id: `replica:d-r${n}`,
      state,
      updated_at: new Date(1_000 * n).toISOString(),
    });
    const store = {
      listReplicas: async () => [row(3), row(1), row(2), row(4, 'HEALTHY')] as never,
    };
    expect(await previousReplicaIds(store, 'd', 2)).toEqual({
      kept: ['d-r2', 'd-r3'],
      dropped: ['d-r1'],
    });
  });
});

describe('PATCH planning', () => {
  it('sees the same revision whatever the key order (jsonb does not keep it)', () => {
    expect(
      sameRevision({ spec: { a: 1, b: { c: 2, d: 3 } } }, { spec: { b: { d: 3, c: 2 }, a: 1 } }),
    ).toBe(true);
    expect(sameRevision({ spec: { a: 1 } }, { spec: { a: 2 } })).toBe(false);
    expect(sameRevision({ spec: {}, declared: ['cpu'] }, { spec: {}, declared: [] })).toBe(false);
  });

  it('applies bounds and refuses impossible ones naming the field', () => {
    const current = { min_replicas: 0, max_replicas: 10, replicas: 2 };
    expect(nextBounds(current, { max_replicas: 4 })).toEqual({ min_replicas: 0, max_replicas: 4 });
    expect(() => nextBounds(current, { min_replicas: 5, max_replicas: 4 })).toThrow(/min_replicas/);
    expect(() => nextBounds(current, { max_replicas: 1 })).toThrow(/max_replicas/);
    expect(() => nextBounds(current, { min_replicas: 3 })).toThrow(/min_replicas/);
    expect(() => nextBounds(current, {}, { min_replicas: 3, max_replicas: 1 })).toThrow(
      /scaling_policy.min_replicas/,
    );
  });
});
