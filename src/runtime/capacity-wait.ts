/**
 * Capacity waits (issue 12): a replica the backend refuses for node capacity waits in STARTING
 * (machines/replica.ts, substate `capacity`) instead of failing. This file words the refusal
 * for the operator and wakes the waiting replicas when capacity frees: a replica stopped or
 * exited, or the runtime started (capacity may have been raised). Event-driven; the replica's
 * own re-check (CAPACITY_RECHECK_S) only covers capacity freed outside this process.
 */
import type { AnyActorRef } from 'xstate';
import type { DeploymentContext } from '../../machines/deployment.ts';
import { replicaActorId } from '../../machines/deployment.ts';
import { FlotillaError, isFlotillaError } from '../domain/errors.ts';
import type { ResourceSlots } from '../domain/session.ts';

const SLOTS = ['cpu', 'mem', 'gpu'] as const;

/**
 * `insufficient cpu: requested 1, free 0` from the ledger becomes
 * `cpu requested 1, free 0 of 2 (insufficient cpu)` (code kept), which the replica quotes after
 * `waiting for capacity: `. Any other error is returned unchanged.
 */
export function capacityRefusal(err: unknown, total: ResourceSlots): unknown {
  if (!isFlotillaError(err) || err.code !== 'insufficient_resources') return err;
  const d = err.details.find((x) => x.path.startsWith('resources.'));
  const slot = d?.path.slice('resources.'.length) as keyof ResourceSlots | undefined;
  const m = d?.message.match(/requested ([\d.e+-]+), free ([\d.e+-]+)/);
  if (!slot || !m || !SLOTS.includes(slot)) return err;
  const show = (n: number) => formatSlot(slot, n);
  return new FlotillaError(
    'insufficient_resources',
    `${slot} requested ${show(Number(m[1]))}, free ${show(Number(m[2]))} of ${show(total[slot])} (insufficient ${slot})`,
    { retryable: true, details: err.details, cause: err },
  );
}

function formatSlot(slot: keyof ResourceSlots, n: number): string {
  if (slot !== 'mem') return String(Number(n.toFixed(3)));
  const gib = n / 1024 ** 3;
  return gib >= 1 ? `${Number(gib.toFixed(2))}GiB` : `${Number((n / 1024 ** 2).toFixed(1))}MiB`;
}

/** Sends `replica.capacity.freed` to every replica waiting for capacity; returns how many. */
export function wakeCapacityWaiters(
  deployments: Iterable<{ context: DeploymentContext }>,
  get: (systemId: string) => AnyActorRef | undefined,
): number {
  let n = 0;
  for (const d of deployments) {
    for (const [replicaId, r] of Object.entries(d.context.replicas)) {
      if (r.state !== 'STARTING') continue;
      const ref = get(replicaActorId(replicaId));
      const value = ref?.getSnapshot().value as unknown;
      if (
        value &&
        typeof value === 'object' &&
        (value as { STARTING?: string }).STARTING === 'capacity'
      ) {
        ref?.send({ type: 'replica.capacity.freed' });
        n++;
      }
    }
  }
  return n;
}
