/**
 * The deployments this runtime runs (non-terminal rows), with the options read from their
 * stored spec: what the routing table, eviction and autoscaling need without a query.
 */
import type { DeploymentRecord } from '../store/store.ts';
import { type DeploymentOptions, optionsOf } from './deployment-options.ts';

export interface TrackedDeployment {
  id: string;
  name: string;
  options: DeploymentOptions;
  /** The last scaling operation (epoch ms), manual or automatic: the autoscaling cooldown. */
  lastScaledAt: number | null;
}

export class TrackedDeployments {
  private readonly byId = new Map<string, TrackedDeployment>();

  /** Starts tracking `record` or refreshes what is known of it (keeps its place in order). */
  track(record: DeploymentRecord): TrackedDeployment {
    const t = {
      id: record.id,
      name: record.name,
      options: optionsOf(record),
      lastScaledAt: record.last_scaled_at ? Date.parse(record.last_scaled_at) : null,
    };
    this.byId.set(record.id, t);
    return t;
  }

  get(id: string): TrackedDeployment | undefined {
    return this.byId.get(id);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  untrack(id: string): void {
    this.byId.delete(id);
  }

  ids(): IterableIterator<string> {
    return this.byId.keys();
  }

  all(): IterableIterator<TrackedDeployment> {
    return this.byId.values();
  }

  get size(): number {
    return this.byId.size;
  }
}
