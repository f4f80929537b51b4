/**
 * Health results into the actor tree: each route actor gets its route's classification
 * (HEALTHY / UNHEALTHY / DEGRADED, from the periodic tick and from the prober's change
 * notifications), and each replica actor counts every probe result once (a result already fed
 * is not fed again by the next tick).
 */
import { replicaActorId, routeActorId } from '../../machines/deployment.ts';
import type { HealthRecord } from '../domain/health.ts';
import {
  classifyMany,
  classifyRoute,
  type RouteClassification,
  type RouteHealth,
} from '../health/classifier.ts';
import type { HealthStore } from '../health/health-store.ts';
import type { ProbeTarget } from '../health/prober.ts';

export interface HealthFeedDeps {
  health: HealthStore;
  maxStalenessS: number;
  now: () => number;
  /** Every probed route. */
  targets(): readonly ProbeTarget[];
  /** The probe target of one route, if it is probed. */
  targetOf(routeId: string): ProbeTarget | undefined;
  /** Sends to one actor by system id; an id that is gone is skipped. */
  send(systemId: string, event: { type: string } & Record<string, unknown>): void;
  /** Lets the event loop run between chunks of a tick (default: setImmediate). */
  yieldEvery?: number;
}

export class HealthFeed {
  /** Per replica: `checked_at` of the last probe result it was fed. */
  private readonly lastFedCheck = new Map<string, number>();
  private classifying = false;

  constructor(private readonly deps: HealthFeedDeps) {}

  /** One classification tick: every probed route, read in pipelined batches. */
  async classifyNow(): Promise<void> {
    if (this.classifying) return;
    this.classifying = true;
    try {
      const ids = this.deps.targets().map((t) => t.routeId);
      const opts = { maxStalenessS: this.deps.maxStalenessS };
      let result: Map<string, RouteHealth>;
      try {
        result = await classifyMany(this.deps.health, ids, this.deps.now(), opts);
      } catch (err) {
        // The shared store is down. What this process probed itself is still current: classify
        // those routes from it; the others keep their last class (fail static), as before.
        const local = this.deps.health.readLocal?.(ids);
        if (!local || local.size === 0) throw err;
        const t = this.deps.now();
        result = new Map();
        for (const [id, record] of local) {
          result.set(id, { ...classifyRoute(record, t, opts), record });
        }
      }
      const every = this.deps.yieldEvery ?? 500;
      let n = 0;
      for (const [routeId, c] of result) {
        this.deliver(routeId, c, c.record?.checked_at ?? null, c.record?.ready ?? null);
        // send() runs the whole cascade synchronously: yield so the proxy keeps serving.
        if (++n % every === 0) await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.classifying = false;
    }
  }

  /** A change notification from the health store (a probe result that flipped). */
  onRecord(record: HealthRecord): void {
    const c = classifyRoute(record, this.deps.now(), { maxStalenessS: this.deps.maxStalenessS });
    this.deliver(record.routeId, c, record.checked_at, record.ready);
  }

  /** The replica is gone: forget what it was fed. */
  forgetReplica(replicaId: string): void {
    this.lastFedCheck.delete(replicaId);
  }

  /** Feeds one route's classification to its route actor, and the result to its replica. */
  deliver(
    routeId: string,
    c: RouteClassification,
    checkedAt: number | null,
    ready: boolean | null,
  ): void {
    const target = this.deps.targetOf(routeId);
    const at = checkedAt ?? this.deps.now();
    this.deps.send(routeActorId(routeId), {
      type: `route.health.${c.class.toLowerCase()}`,
      reason: c.reason,
      at,
    });
    // A replica counts each probe result once; no data is no verdict on the replica.
    if (!target || checkedAt === null || ready === null) return;
    const last = this.lastFedCheck.get(target.replicaId) ?? 0;
    if (checkedAt <= last) return;
    this.lastFedCheck.set(target.replicaId, checkedAt);
    this.deps.send(replicaActorId(target.replicaId), {
      type: ready ? 'replica.health.passed' : 'replica.health.failed',
      detail: c.reason,
    });
  }
}
