/**
 * What a backend needs to run one replica. Produced by a definition generator
 * (src/session-generators) from a ModelRevisionSpec.
 */
export interface HealthCheckSpec {
  /** HTTP path probed for readiness, e.g. `/health`. */
  path: string;
  /** Probe method; absent (sessions stored before it existed) means GET. POST has no body. */
  method?: 'GET' | 'HEAD' | 'POST' | undefined;
  interval_s: number;
  timeout_s: number;
  healthy_threshold: number;
  unhealthy_threshold: number;
  startup_timeout_s: number;
}

export interface ResourceSlots {
  cpu: number;
  /** bytes */
  mem: number;
  gpu: number;
}

export interface SessionSpec {
  runtime_variant: string;
  /**
   * argv. `{port}` in any element is replaced by the replica's port at start;
   * the port is also given in the `PORT` environment variable.
   */
  command: string[];
  environ: Record<string, string>;
  /** Container image for image-based variants; the process backend ignores it. */
  image?: string | undefined;
  /** Port the server listens on inside a container; the process backend assigns a free one. */
  port: number;
  /** Working directory (the model folder) when there is one. */
  workdir?: string | undefined;
  health: HealthCheckSpec;
  /**
   * Route weight of every replica running this session under the `WEIGHTED` strategy
   * (revision field `weight`, 1..1000). Absent: 1.
   */
  weight?: number | undefined;
  resources: ResourceSlots;
  /**
   * The slots the operator declared (request or service definition). The process backend
   * reserves only these and GPUs (undeclared cpu/mem are best effort, as for a container
   * without requests). Absent: every slot is reserved (sessions stored before this field).
   */
  declared?: Array<keyof ResourceSlots> | undefined;
}

export const DEFAULT_HEALTH_CHECK: HealthCheckSpec = {
  path: '/health',
  method: 'GET',
  interval_s: 5,
  timeout_s: 2,
  healthy_threshold: 1,
  unhealthy_threshold: 3,
  startup_timeout_s: 300,
};
