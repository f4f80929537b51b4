/**
 * Publishes the routing table per deployment: a change to one deployment marks it dirty; the
 * publish that follows (once per event-loop turn) rebuilds only the dirty deployments' entries
 * and hands every listener the new table with its change attached (`changeOf`), so a sink
 * applies that deployment only. The full table is built lazily, for callers that want it.
 */

import type { DeploymentRoutes, EndpointRoutes, RoutingTable } from '../domain/routing.ts';
import { lazyRoutingTable, type RoutingTableChange, withChange } from '../domain/routing-change.ts';
import type { ProbeTarget } from '../health/prober.ts';
import type { DeploymentRouting } from './routing-table-builder.ts';

export interface RoutingPublisherDeps {
  /** A deployment's entry as of now; null when it is not (or no longer) in the table. */
  build(deploymentId: string): DeploymentRouting | null;
  now: () => number;
  warn(obj: object, msg: string): void;
  /** Runs the coalesced publish later; default `setImmediate`. */
  defer?: (fn: () => void) => void;
}

export type RoutingTableListener = (table: RoutingTable, change: RoutingTableChange) => void;

export class RoutingPublisher {
  /** Entries in table order (first publish order). */
  private readonly entries = new Map<string, DeploymentRouting>();
  private readonly dirty = new Set<string>();
  private readonly targetByRoute = new Map<string, ProbeTarget>();
  private targetList: ProbeTarget[] | null = [];
  private endpoints: EndpointRoutes[] = [];
  private endpointsChanged = false;
  private version = 0;
  private table: RoutingTable = lazyRoutingTable(0, [], () => []);
  private readonly listeners = new Set<RoutingTableListener>();
  private scheduled = false;

  constructor(private readonly deps: RoutingPublisherDeps) {}

  /** Rebuild this deployment's entry at the next publish. */
  markDirty(deploymentId: string): void {
    this.dirty.add(deploymentId);
    this.schedule();
  }

  /** Replaces the endpoint list (published with the next table). */
  setEndpoints(endpoints: EndpointRoutes[]): void {
    this.endpoints = endpoints;
    this.endpointsChanged = true;
    this.schedule();
  }

  /** A publish at the end of this event-loop turn (changes of one burst share it). */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    (this.deps.defer ?? setImmediate)(() => {
      this.scheduled = false;
      // Nothing left when a reader already published it.
      if (this.dirty.size > 0 || this.endpointsChanged) this.publishNow();
    });
  }

  /** Rebuilds the dirty entries and publishes a new version now. */
  publishNow(): RoutingTable {
    const upserted: DeploymentRoutes[] = [];
    const removed: RoutingTableChange['removed'][number][] = [];
    for (const id of this.dirty) {
      const built = this.deps.build(id);
      const old = this.entries.get(id);
      if (old) for (const t of old.targets) this.targetByRoute.delete(t.routeId);
      if (built) {
        this.entries.set(id, built);
        for (const t of built.targets) this.targetByRoute.set(t.routeId, t);
        upserted.push(built.entry);
      } else if (old) {
        this.entries.delete(id);
        removed.push({ deploymentId: id, name: old.entry.name });
      }
      if (old || built) this.targetList = null;
    }
    this.dirty.clear();
    const base = this.version;
    // Wall-clock based, so a restarted coordinator never publishes an "older" table.
    this.version = Math.max(this.version + 1, this.deps.now());
    const change: RoutingTableChange = {
      version: this.version,
      base,
      upserted,
      removed,
      endpointsChanged: this.endpointsChanged,
    };
    this.endpointsChanged = false;
    this.table = withChange(
      lazyRoutingTable(this.version, this.endpoints, () =>
        Array.from(this.entries.values(), (e) => e.entry),
      ),
      change,
    );
    for (const l of this.listeners) {
      try {
        l(this.table, change);
      } catch (err) {
        this.deps.warn({ err }, 'routing table listener threw');
      }
    }
    return this.table;
  }

  /**
   * The newest table (its deployment list is built on first read). Never behind a change
   * already marked: a pending publish runs now, so a reader right after a transition (before
   * the event loop reaches the deferred publish) sees it.
   */
  current(): RoutingTable {
    if (this.dirty.size > 0 || this.endpointsChanged) this.publishNow();
    return this.table;
  }

  /** Every route the prober should check (rebuilt only after a change). */
  probeTargets(): ProbeTarget[] {
    if (this.dirty.size > 0) this.publishNow();
    this.targetList ??= Array.from(this.entries.values()).flatMap((e) => e.targets);
    return this.targetList;
  }

  /** The probe target of a route, if it is probed. */
  probeTarget(routeId: string): ProbeTarget | undefined {
    return this.targetByRoute.get(routeId);
  }

  subscribe(listener: RoutingTableListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
