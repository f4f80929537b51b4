/**
 * What changed between two routing tables, so a sink can apply one deployment's change
 * without reading the whole table (the cost of a change must not grow with the fleet).
 *
 * A table published with a change carries it out of band (`changeOf(table)`): a sink that
 * knows the change and holds exactly `base` applies only `upserted`, `removed` and (when
 * `endpointsChanged`) the endpoint list; any other sink reads the table as a full replace.
 */
import type { DeploymentRoutes, EndpointRoutes, RoutingTable } from './routing.ts';

export interface RoutingTableChange {
  /** The version of the table this change produces. */
  version: number;
  /** The version it applies on top of. */
  base: number;
  /** Deployments whose entry is new or changed, each complete. */
  upserted: readonly DeploymentRoutes[];
  /** Deployments gone from the table (with the name they had). */
  removed: readonly { deploymentId: string; name: string }[];
  /** Whether the endpoint list changed (it is then the table's `endpoints`). */
  endpointsChanged: boolean;
}

const changes = new WeakMap<RoutingTable, RoutingTableChange>();

/** Attaches `change` to `table` (the change that produced it); returns `table`. */
export function withChange(table: RoutingTable, change: RoutingTableChange): RoutingTable {
  changes.set(table, change);
  return table;
}

/** The change that produced `table`, when its publisher said. */
export function changeOf(table: RoutingTable): RoutingTableChange | undefined {
  return changes.get(table);
}

/**
 * A table whose `deployments` list is built on first read (then kept), so publishing a version
 * costs nothing for sinks that only apply its change. `deployments()` must return the entries
 * as of `version` or newer: a consumer may see a newer entry under an older version, never an
 * older one (re-applying the newer version's change is then a no-op).
 */
export function lazyRoutingTable(
  version: number,
  endpoints: EndpointRoutes[],
  deployments: () => DeploymentRoutes[],
): RoutingTable {
  let built: DeploymentRoutes[] | undefined;
  const table = { version, endpoints } as RoutingTable;
  // An own enumerable accessor: JSON.stringify and object spread read it like a plain field.
  Object.defineProperty(table, 'deployments', {
    enumerable: true,
    configurable: false,
    get: () => {
      built ??= deployments();
      return built;
    },
  });
  return table;
}
