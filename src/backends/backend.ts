/**
 * The replica backend port: what the runtime needs to run one replica of a deployment.
 * Adapters: `process-backend.ts` (the default; local processes) and `docker-backend.ts`.
 *
 * Invariants every adapter keeps:
 * - Everything is keyed by the replica id the runtime chose; every call is idempotent per id,
 *   so a coordinator restored from a snapshot may repeat any effect it had started.
 * - A replica outlives the coordinator that started it; a new backend instance over the same
 *   state (data directory, Docker labels) adopts the replicas that are still alive and reports
 *   the ones that died meanwhile.
 * - A replica's resource slots are reserved before it starts and released when it stops or
 *   dies; a replica that does not fit is never started.
 * - No orphans: stopping a replica ends every process it started.
 */
import type { ResourceSlots, SessionSpec } from '../domain/session.ts';

/** Where a running replica answers. */
export interface ReplicaHandle {
  replicaId: string;
  /** Process backend: the pid of the replica's process-group leader. */
  pid?: number;
  /** Docker backend: the container id. */
  containerId?: string;
  /** Host the data plane reaches the replica on (e.g. `127.0.0.1`). */
  host: string;
  port: number;
  /** `http://host:port`, no trailing slash. */
  url: string;
  /** epoch ms when the replica's session started (not when it was adopted). */
  startedAt: number;
}

/** A replica's session ended on its own. `code`/`signal` are null when unknown (adopted replicas). */
export interface ReplicaExit {
  replicaId: string;
  code: number | null;
  signal: string | null;
  /** epoch ms when the death was noticed */
  at: number;
}

export type ReplicaStatus = 'running' | 'exited' | 'unknown';

/**
 * What a running replica uses now, for the `cpu` and `memory` autoscaling metrics
 * (src/scaling/resource-metrics.ts turns two readings into a utilization).
 */
export interface ReplicaUsage {
  /**
   * CPU seconds the replica's session has used since it started, every process of it counted:
   * the whole process group (process backend), the container's cgroup (Docker). Grows with
   * time; a rate needs two readings.
   */
  cpuSeconds: number;
  /**
   * Resident memory in bytes: the sum of the group's members' RSS (process backend), the
   * container's memory use without its page cache, as `docker stats` shows it (Docker).
   */
  rssBytes: number;
  /**
   * The slots the replica reserved when it started (0 for a slot its session did not request):
   * what utilization is measured against.
   */
  requested: ResourceSlots;
}

export interface ReplicaBackend {
  readonly name: 'process' | 'docker';
  /**
   * Starts the replica, or returns it when a live replica with this id already exists (adopted,
   * never started twice; concurrent calls for one id share one start). A replica whose earlier
   * session died is started anew. Throws FlotillaError('insufficient_resources',
   * 'insufficient gpu: requested 2, free 0') when its resource slots do not fit; nothing is
   * started then.
   */
  start(replicaId: string, spec: SessionSpec): Promise<ReplicaHandle>;
  /**
   * SIGTERM to the replica's process group (container), SIGKILL after graceMs. Idempotent:
   * stopping an unknown or dead replica resolves. Resolves when every process of the replica is
   * gone; frees its resources. A stopped replica is not reported through onExit.
   */
  stop(replicaId: string, graceMs: number): Promise<void>;
  /** `running` (alive), `exited` (known to this backend but dead or stopped), `unknown`. */
  status(replicaId: string): Promise<ReplicaStatus>;
  /** The replicas running now, including adopted ones. Dead ones are not listed (see status). */
  list(): Promise<ReplicaHandle[]>;
  /**
   * The replica's resource use now; null when it is not running here (unknown, exited, stopped)
   * or cannot be read. Cheap enough to call for every replica every few seconds.
   */
  usage(replicaId: string): Promise<ReplicaUsage | null>;
  /** The tail of the replica's combined stdout/stderr; '' for an unknown replica. */
  logs(replicaId: string, opts?: { tailBytes?: number }): Promise<string>;
  /**
   * Called when a replica's session dies on its own (not through stop()), within one second of
   * the death; also for replicas found dead when this backend started (a coordinator restart).
   * Exits noticed while nobody listens are kept and delivered to the first listener, so none is
   * lost between creating the backend and subscribing. Returns an unsubscribe function.
   */
  onExit(listener: (exit: ReplicaExit) => void): () => void;
  /**
   * Whether the replica's last session was stopped by `close({ stopReplicas: true })` (a clean
   * shutdown) and not started since: the next coordinator starts it again as a planned event.
   * Optional; a backend without it has every such replica treated as exited.
   */
  stoppedAtShutdown?(replicaId: string): Promise<boolean>;
  /**
   * Drops what is kept of an exited replica (its output and record); a running or unknown
   * replica is left alone. Optional: keeps `logs --previous` bounded per deployment.
   */
  forget?(replicaId: string): Promise<void>;
  /** Current capacity accounting, for status/diagnosis. `used` may exceed `total` after adoption. */
  capacity(): { total: ResourceSlots; used: ResourceSlots };
  /**
   * Stops watching. With stopReplicas, stops every replica this backend runs first (clean
   * `serve` shutdown); without, they keep running for the next coordinator to adopt.
   */
  close(opts: { stopReplicas: boolean; graceMs?: number }): Promise<void>;
}

/** Docker label that carries the replica id (adoption by label after a restart). */
export const REPLICA_ID_LABEL = 'flotilla.replica-id';

/** Environment variable every replica receives with its own id. */
export const REPLICA_ID_ENV = 'FLOTILLA_REPLICA_ID';

/** Default grace period for `close({ stopReplicas: true })`. */
export const DEFAULT_STOP_GRACE_MS = 10_000;

/** `{port}` substituted in every element of a command. */
export function substitutePort(command: readonly string[], port: number): string[] {
  return command.map((arg) => arg.replaceAll('{port}', String(port)));
}

const REPLICA_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Replica ids become directory and container names, so they are restricted to a safe alphabet. */
export function isValidReplicaId(replicaId: string): boolean {
  return REPLICA_ID_PATTERN.test(replicaId);
}
