/**
 * Node capacity accounting shared by the backends: each replica's resource slots are reserved
 * before it starts and released when it stops or dies.
 */
import os from 'node:os';
import { FlotillaError } from '../domain/errors.ts';
import type { ResourceSlots, SessionSpec } from '../domain/session.ts';

const SLOT_ORDER = ['gpu', 'cpu', 'mem'] as const;
type Slot = (typeof SLOT_ORDER)[number];

/** The machine's capacity: every CPU, all memory, no GPU (we do not probe for accelerators). */
export function machineCapacity(): ResourceSlots {
  return { cpu: os.cpus().length, mem: os.totalmem(), gpu: 0 };
}

export function resolveCapacity(partial: Partial<ResourceSlots> | undefined): ResourceSlots {
  const base = machineCapacity();
  const total = {
    cpu: partial?.cpu ?? base.cpu,
    mem: partial?.mem ?? base.mem,
    gpu: partial?.gpu ?? base.gpu,
  };
  for (const slot of SLOT_ORDER) {
    if (!Number.isFinite(total[slot]) || total[slot] < 0) {
      throw new FlotillaError('validation', `capacity.${slot} must be a number >= 0`, {
        details: [{ path: `capacity.${slot}`, message: `got ${String(total[slot])}` }],
      });
    }
  }
  return total;
}

function formatAmount(slot: Slot, n: number): string {
  if (slot === 'mem') {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = n;
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return `${Number(v.toFixed(2))} ${units[i]}`;
  }
  return String(Number(n.toFixed(3)));
}

// Float sums (0.1 + 0.2 cpu) must not reject a replica that exactly fits.
const EPSILON = 1e-9;

/**
 * Reservations keyed by replica id. `reserve` is idempotent per id (re-reserving replaces the
 * old reservation); `adopt` records a running replica even past capacity, since it already runs.
 * The sum is kept as reservations come and go, so a reservation costs the same with 10 or
 * 40,000 replicas on the ledger.
 */
export class CapacityLedger {
  readonly total: ResourceSlots;
  private readonly reservations = new Map<string, ResourceSlots>();
  private readonly sum: ResourceSlots = { cpu: 0, mem: 0, gpu: 0 };

  constructor(total: ResourceSlots) {
    this.total = Object.freeze({ ...total });
  }

  used(): ResourceSlots {
    return { ...this.sum };
  }

  /** Throws FlotillaError('insufficient_resources') naming the first slot that does not fit. */
  reserve(replicaId: string, wanted: ResourceSlots): void {
    const used = this.used();
    const previous = this.reservations.get(replicaId);
    for (const slot of SLOT_ORDER) {
      const requested = wanted[slot] ?? 0;
      const free = this.total[slot] - used[slot] + (previous?.[slot] ?? 0);
      if (requested > free + EPSILON) {
        const freeShown = Math.max(0, free);
        throw new FlotillaError(
          'insufficient_resources',
          `insufficient ${slot}: requested ${formatAmount(slot, requested)}, free ${formatAmount(slot, freeShown)}`,
          {
            retryable: true,
            details: [
              {
                path: `resources.${slot}`,
                message: `requested ${requested}, free ${freeShown}, total ${this.total[slot]}`,
              },
            ],
          },
        );
      }
    }
    this.set(replicaId, normalize(wanted));
  }

  adopt(replicaId: string, slots: ResourceSlots): void {
    this.set(replicaId, normalize(slots));
  }

  release(replicaId: string): void {
    this.set(replicaId, undefined);
  }

  private set(replicaId: string, slots: ResourceSlots | undefined): void {
    const previous = this.reservations.get(replicaId);
    for (const slot of SLOT_ORDER) {
      this.sum[slot] += (slots?.[slot] ?? 0) - (previous?.[slot] ?? 0);
    }
    if (slots) this.reservations.set(replicaId, slots);
    else this.reservations.delete(replicaId);
    // Float sums drift (0.1 + 0.2 - 0.1 - 0.2 != 0): an empty ledger uses exactly nothing.
    if (this.reservations.size === 0) this.sum.cpu = this.sum.mem = this.sum.gpu = 0;
  }

  snapshot(): { total: ResourceSlots; used: ResourceSlots } {
    return { total: { ...this.total }, used: this.used() };
  }
}

/**
 * What the node must reserve for a session: the slots the operator declared (cpu, mem), and
 * GPUs always. A session without `declared` (stored before issue 12, or built by hand) reserves
 * everything, as before.
 */
export function reservedSlots(spec: Pick<SessionSpec, 'resources' | 'declared'>): ResourceSlots {
  if (!spec.declared) return spec.resources;
  const d = new Set(spec.declared);
  return {
    cpu: d.has('cpu') ? spec.resources.cpu : 0,
    mem: d.has('mem') ? spec.resources.mem : 0,
    gpu: spec.resources.gpu,
  };
}

function normalize(slots: ResourceSlots): ResourceSlots {
  return { cpu: slots.cpu ?? 0, mem: slots.mem ?? 0, gpu: slots.gpu ?? 0 };
}
