import { describe, expect, it } from 'vitest';
import {
  CapacityLedger,
  machineCapacity,
  resolveCapacity,
} from '../../../src/backends/capacity.ts';
import { FlotillaError } from '../../../src/domain/errors.ts';

const GiB = 1024 ** 3;

describe('capacity ledger', () => {
  it('defaults to every cpu and all memory of the machine, and no gpu', () => {
    const total = resolveCapacity({ gpu: undefined });
    expect(total).toEqual(machineCapacity());
    expect(total.gpu).toBe(0);
    expect(resolveCapacity({ cpu: 3 })).toMatchObject({ cpu: 3, gpu: 0 });
    expect(() => resolveCapacity({ cpu: -1 })).toThrow(FlotillaError);
  });

  it('fits replicas whose fractional cpus add up exactly to the capacity', () => {
    const ledger = new CapacityLedger({ cpu: 0.3, mem: GiB, gpu: 0 });
    for (const id of ['a', 'b', 'c']) ledger.reserve(id, { cpu: 0.1, mem: 1, gpu: 0 });
    expect(() => ledger.reserve('d', { cpu: 0.1, mem: 1, gpu: 0 })).toThrow(
      'insufficient cpu: requested 0.1, free 0',
    );
  });

  it('names the first slot that does not fit, gpu before cpu before memory, memory in units', () => {
    const ledger = new CapacityLedger({ cpu: 1, mem: 2 * GiB, gpu: 0 });
    const err = (() => {
      try {
        ledger.reserve('x', { cpu: 8, mem: 16 * GiB, gpu: 2 });
      } catch (e) {
        return e as FlotillaError;
      }
    })();
    expect(err).toMatchObject({ code: 'insufficient_resources', status: 409, retryable: true });
    expect(err?.message).toBe('insufficient gpu: requested 2, free 0');
    expect(err?.details[0]?.path).toBe('resources.gpu');
    expect(() => ledger.reserve('y', { cpu: 1, mem: 16 * GiB, gpu: 0 })).toThrow(
      'insufficient mem: requested 16 GiB, free 2 GiB',
    );
  });

  it('re-reserving one replica replaces its reservation instead of adding to it', () => {
    const ledger = new CapacityLedger({ cpu: 2, mem: GiB, gpu: 0 });
    ledger.reserve('a', { cpu: 2, mem: 1, gpu: 0 });
    ledger.reserve('a', { cpu: 2, mem: 1, gpu: 0 });
    expect(ledger.used().cpu).toBe(2);
    ledger.release('a');
    ledger.release('a');
    expect(ledger.used()).toEqual({ cpu: 0, mem: 0, gpu: 0 });
  });

  it('adopts a running replica even past capacity, and then refuses new ones', () => {
    const ledger = new CapacityLedger({ cpu: 1, mem: GiB, gpu: 0 });
    ledger.adopt('running', { cpu: 2, mem: 1, gpu: 0 });
    expect(ledger.snapshot()).toEqual({
      total: { cpu: 1, mem: GiB, gpu: 0 },
      used: { cpu: 2, mem: 1, gpu: 0 },
    });
    expect(() => ledger.reserve('new', { cpu: 0.5, mem: 1, gpu: 0 })).toThrow(
      'insufficient cpu: requested 0.5, free 0',
    );
  });
});
