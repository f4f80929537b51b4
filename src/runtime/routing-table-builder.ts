/**
 * The routing table of one deployment, built from what the runtime knows: its metadata, its
 * actor's context (replicas, endpoints, route states) and the session specs of its revisions.
 * Pure: the same inputs give the same entry; nothing here reads the actor tree or the clock.
 */

import type { DeploymentContext } from '../../machines/deployment.ts';
import {
  type ReplicaConcurrency,
  replicaConcurrencyOf,
  tightest,
} from '../domain/replica-concurrency.ts';
import type {
  AdmissionSettings,
  DeploymentRoutes,
  RouteEntry,
  RoutingConfig,
  RoutingTable,
} from '../domain/routing.ts';
import type { SessionSpec } from '../domain/session.ts';
import type { ProbeTarget } from '../health/prober.ts';
import { scaleToZeroAfterS } from '../scaling/scale-to-zero.ts';
import type { SessionCache } from './session-cache.ts';
import type { TrackedDeployment } from './tracked-deployments.ts';

/** Route states the prober checks (a route still being set up is probed until it answers). */
export const PROBED_ROUTE_STATES: ReadonlySet<string> = new Set([
  'PROVISIONING',
  'HEALTHY',
  'UNHEALTHY',
  'DEGRADED',
]);

/** Route states the table carries (TERMINATING: the proxy lets in-flight requests finish). */
export const TABLE_ROUTE_STATES: ReadonlySet<string> = new Set([
  ...PROBED_ROUTE_STATES,
  'TERMINATING',
]);

/** What the table says about a deployment besides its routes. */
export interface RoutedDeployment {
  id: string;
  name: string;
  routing: RoutingConfig;
  admission?: AdmissionSettings | undefined;
  /** Scales to zero: proxies hold requests while it has no replica (DeploymentRoutes). */
  activation?: boolean | undefined;
}

/** One deployment's part of the routing table and of the prober's work. */
export interface DeploymentRouting {
  entry: DeploymentRoutes;
  targets: ProbeTarget[];
}

/** The table entry and probe targets of one deployment. */
export function buildDeploymentRouting(
  deployment: RoutedDeployment,
  context: Pick<DeploymentContext, 'replicas'>,
  sessionOf: (revisionId: string) => SessionSpec | undefined,
): DeploymentRouting {
  const routes: RouteEntry[] = [];
  const targets: ProbeTarget[] = [];
  const concurrency: ReplicaConcurrency[] = [];
  for (const [replicaId, r] of Object.entries(context.replicas)) {
    if (!r.endpoint) continue;
    const session = sessionOf(r.revisionId);
    if (TABLE_ROUTE_STATES.has(r.routeState)) {
      if (session) concurrency.push(replicaConcurrencyOf(session));
      routes.push({
        routeId: r.routeId,
        replicaId,
        url: r.endpoint,
        state: r.routeState as RouteEntry['state'],
        // The revision's weight: during a rolling update traffic follows each revision's share.
        weight: session?.weight ?? 1,
        health: session?.health,
      });
    }
    if (session && PROBED_ROUTE_STATES.has(r.routeState)) {
      targets.push({ routeId: r.routeId, replicaId, url: r.endpoint, health: session.health });
    }
  }
  const replicaConcurrency = tightest(concurrency);
  return {
    entry: {
      deploymentId: deployment.id,
      name: deployment.name,
      routing: deployment.routing,
      routes,
      ...(deployment.admission ? { admission: deployment.admission } : {}),
      ...(deployment.activation ? { activation: true as const } : {}),
      ...(replicaConcurrency ? { replica_concurrency: replicaConcurrency } : {}),
    },
    targets,
  };
}

/** A whole table from its deployments (the full build; the runtime builds per deployment). */
export function buildRoutingTable(
  version: number,
  deployments: ReadonlyArray<{
    deployment: RoutedDeployment;
    context: Pick<DeploymentContext, 'replicas'>;
  }>,
  sessionOf: (revisionId: string) => SessionSpec | undefined,
  endpoints: RoutingTable['endpoints'] = [],
): { table: RoutingTable; targets: ProbeTarget[] } {
  const built = deployments.map((d) => buildDeploymentRouting(d.deployment, d.context, sessionOf));
  return {
    table: { version, deployments: built.map((b) => b.entry), endpoints },
    targets: built.flatMap((b) => b.targets),
  };
}

/** A tracked deployment's routing from its live context, sessions from the cache. */
export function routingOfTracked(
  d: TrackedDeployment,
  context: Pick<DeploymentContext, 'replicas'>,
  sessions: Pick<SessionCache, 'cached'>,
): DeploymentRouting {
  const { routing, admission, min_replicas, scaling_policy } = d.options;
  const activation = scaleToZeroAfterS(min_replicas, scaling_policy) !== null;
  return buildDeploymentRouting(
    { id: d.id, name: d.name, routing, admission, activation },
    context,
    (id) => sessions.cached(id),
  );
}
