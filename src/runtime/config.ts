import type { DeploymentSettings } from '../../machines/deployment.ts';
import { HEALTH_DEFAULTS } from '../domain/health.ts';

/** Tunables of the actor runtime. Parsed once by the composition root and passed down. */
export interface RuntimeConfig {
  /** Shard actors between the coordinator and the deployments (≈√ of the expected fleet). */
  shards: number;
  /** HEALTH_CHECK_INTERVAL_SEC: the classification tick. */
  healthCheckIntervalS: number;
  /** Eviction sweep interval (route_cleanup_target_statuses). */
  evictionIntervalS: number;
  /** MAX_HEALTH_STALENESS_SEC. */
  maxHealthStalenessS: number;
  /** Autoscaling evaluation interval (also how often the proxies' load reports are read). */
  scalingIntervalS: number;
  /** How often idle deployments are checked for scale to zero (cheap: skipped without any). */
  scaleToZeroIntervalS: number;
  /** Defaults for every deployment's machine settings (timeouts, restarts, backoff). */
  deploymentDefaults: Partial<DeploymentSettings>;
  /** Delay that lets transitions of one burst share a PostgreSQL round trip. */
  flushDelayMs: number;
}

export const DEFAULT_RUNTIME_CONFIG: RuntimeConfig = {
  shards: 32,
  healthCheckIntervalS: HEALTH_DEFAULTS.HEALTH_CHECK_INTERVAL_SEC,
  evictionIntervalS: HEALTH_DEFAULTS.EVICTION_INTERVAL_SEC,
  maxHealthStalenessS: HEALTH_DEFAULTS.MAX_HEALTH_STALENESS_SEC,
  scalingIntervalS: 2,
  scaleToZeroIntervalS: 1,
  deploymentDefaults: {},
  flushDelayMs: 2,
};
