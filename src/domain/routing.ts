/**
 * The routing table: what the data plane (src/proxy) and the Traefik publisher (src/etcd)
 * read. Produced by the runtime from route actors; always published as a full replace.
 */
import type { RouteState } from '../../machines/route-states.ts';
import type { ReplicaConcurrency } from './replica-concurrency.ts';
import type { HealthCheckSpec } from './session.ts';

// One definition, shared with the route machine (machines/route-states.ts says why it is there).
export { type RouteState, RouteStates } from '../../machines/route-states.ts';

export const BalancingStrategies = [
  'round_robin',
  'least_connections',
  'weighted',
  'power_of_two_choices',
] as const;
export type BalancingStrategy = (typeof BalancingStrategies)[number];

export interface RoutingConfig {
  strategy: BalancingStrategy;
  request_timeout_s: number;
  /** Retries on connection failure or 502/503, each to another replica. */
  retries: number;
  /**
   * When set and not empty, the proxy forwards only paths (as the replica receives them,
   * after dot segments are resolved) that start with one of these prefixes, e.g. `/v1/`;
   * others answer 404 `not_found`. Off (every path) by default.
   */
  allowed_path_prefixes?: string[] | undefined;
}

/**
 * Whether `routing`'s path allow-list lets `path` (the replica's path, query included)
 * through. With a list, a path holding an encoded slash or backslash is refused too: a
 * replica that decodes it could climb out of the allowed prefix (`/v1/..%2Fadmin`).
 */
export function isPathAllowed(routing: RoutingConfig, path: string): boolean {
  const prefixes = routing.allowed_path_prefixes;
  if (!prefixes || prefixes.length === 0) return true;
  const q = path.indexOf('?');
  const pathname = q === -1 ? path : path.slice(0, q);
  if (/%(2f|5c)/i.test(pathname) || pathname.includes('\\')) return false;
  return prefixes.some((p) => pathname.startsWith(p));
}

export const DEFAULT_ROUTING: RoutingConfig = {
  strategy: 'round_robin',
  request_timeout_s: 60,
  retries: 2,
};

export interface RouteEntry {
  routeId: string;
  replicaId: string;
  /** Base URL of the replica, e.g. `http://127.0.0.1:41234`. */
  url: string;
  state: RouteState;
  weight: number;
  /** The replica's readiness check, so a prober in another process can probe from the table. */
  health?: HealthCheckSpec | undefined;
}

/** The graceful-degradation guide's named settings (README "Admission"). */
export const AdmissionProfiles = ['small', 'medium', 'large'] as const;
export type AdmissionProfile = (typeof AdmissionProfiles)[number];
/** `fixed`: a set number per replica; `adaptive`: a limit that follows measured latency. */
export const AdmissionModes = ['fixed', 'adaptive'] as const;
export type AdmissionMode = (typeof AdmissionModes)[number];

/**
 * Per-deployment admission control (docs/health-and-degradation.md); absent fields take the
 * profile's values, then the proxy's defaults (src/proxy/admission.ts: 60 s, queue 50, the
 * replica's own concurrency from its runtime, 0.8, 0.7, queue 30 s, mode fixed).
 */
export interface AdmissionSettings {
  profile?: AdmissionProfile | undefined;
  mode?: AdmissionMode | undefined;
  request_timeout_s?: number | undefined;
  max_queue_size?: number | undefined;
  max_concurrent_requests?: number | undefined;
  queue_rejection_threshold?: number | undefined;
  rejection_threshold?: number | undefined;
  queue_timeout_s?: number | undefined;
}

export interface DeploymentRoutes {
  deploymentId: string;
  name: string;
  routing: RoutingConfig;
  routes: RouteEntry[];
  admission?: AdmissionSettings | undefined;
  /**
   * The deployment scales to zero (`scaling_policy.scale_to_zero_after_s`): with no servable
   * replica, a proxy holds its requests and asks for an activation instead of answering 503.
   */
  activation?: true | undefined;
  /** What one replica takes at once, from its runtime's launch command (admission default). */
  replica_concurrency?: ReplicaConcurrency | undefined;
}

export interface EndpointBackend {
  deployment: string;
  weight: number;
}

export interface EndpointRoutes {
  name: string;
  backends: EndpointBackend[];
}

export interface RoutingTable {
  /** Monotonic version; a consumer ignores a table older than the one it has. */
  version: number;
  deployments: DeploymentRoutes[];
  endpoints: EndpointRoutes[];
}
