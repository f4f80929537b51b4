/**
 * Events a proxy reports about its own view of the replicas (what the coordinator, the
 * inspector or a log may want to see). Passive outlier detection is per proxy: another proxy
 * may still send traffic to a replica this one ejected.
 */
export type ProxyEvent =
  | {
      type: 'outlier.ejected';
      deployment: string;
      deploymentId: string;
      routeId: string;
      replicaId: string;
      /** What the last failure was: `connect`, `socket`, `timeout` or `status_5xx`. */
      reason: string;
      consecutiveFailures: number;
      /** How long the replica is out of rotation. */
      ejectionMs: number;
      /** epoch milliseconds */
      at: number;
    }
  | {
      type: 'outlier.returned';
      deployment: string;
      deploymentId: string;
      routeId: string;
      replicaId: string;
      /** epoch milliseconds */
      at: number;
    };

/** Receives proxy events; exceptions it throws are logged and ignored. */
export type ProxyEventListener = (e: ProxyEvent) => void;
