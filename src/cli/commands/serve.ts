/**
 * `flotilla serve`: the composition root. Parses the configuration once (serve-config.ts),
 * creates the metrics registry, the embedded Flotilla (store, backend, health, runtime,
 * prober, proxy) and the HTTP API, prints one line per listener, and on SIGINT/SIGTERM closes
 * everything (replicas stopped unless --keep-replicas, so the next start adopts them).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { buildApp } from '../../api/build-app.ts';
import { createMetrics } from '../../api/metrics.ts';
import type { ReplicaBackend } from '../../backends/backend.ts';
import { createDockerBackend } from '../../backends/docker-backend.ts';
import { hostForUrl } from '../../domain/host.ts';
import type { ResourceSlots } from '../../domain/session.ts';
import { campaignForLeadership, type Leadership } from '../../etcd/leader-election.ts';
import { createFlotilla, type Flotilla } from '../../index.ts';
import { buildNodeApp } from '../../roles/node-app.ts';
import { startProberNode } from '../../roles/prober-node.ts';
import { startProxyNode } from '../../roles/proxy-node.ts';
import { parseOrExit } from '../flags.ts';
import { detectGpuCount } from '../gpu-count.ts';
import {
  ConfigError,
  describeServeConfig,
  parseServeConfig,
  SERVE_FLAGS,
  type ServeConfig,
} from './serve-config.ts';
import { type HealthParts, healthReport } from './serve-health.ts';

const HELP = `usage: flotilla serve [options]

Runs every Flotilla role (API, coordinator, prober, proxy) in this process. Without
DATABASE_URL it keeps its state in an embedded PostgreSQL (PGlite) under --data-dir; without
REDIS_URL health data stays in memory. Flags win over environment variables.

options:
  --database-url <url>      PostgreSQL (env DATABASE_URL; default: embedded under --data-dir)
  --redis-url <url>         Redis for health data and the routing table (env REDIS_URL;
                            default: in-process)
  --redis-prefix <p>        key prefix in Redis (env FLOTILLA_REDIS_PREFIX, default flotilla:)
  --etcd-endpoints <urls>   comma-separated etcd URLs (env ETCD_ENDPOINTS). With it, the
                            coordinator (--role coordinator or all) is elected through etcd
                            (one leader; a standby prints "standby: waiting for leadership",
                            answers /ready with 503 and takes over within about 5 s of the
                            leader's death, restoring from PostgreSQL; a leader that loses its
                            lease exits with code 3), and the routing table is published under
                            the key "traefik/" in Traefik's KV layout
  --api-port <n>            HTTP API port (env FLOTILLA_API_PORT, default 8080; 0: any free)
  --proxy-port <n>          data-plane proxy port (env FLOTILLA_PROXY_PORT, default 8000)
  --proxy-workers <n>       proxy processes sharing the proxy port (env FLOTILLA_PROXY_WORKERS,
                            default: cores - 1, at least 1, and 1 with --role proxy; 1 runs
                            the proxy in this process). /metrics on --api-port sums them
  --host <addr>             listen address of both (env FLOTILLA_HOST, default 127.0.0.1);
                            any non-loopback address needs an API token
  --data-dir <dir>          embedded database, replica state and logs (env FLOTILLA_DATA_DIR,
                            default ./.flotilla)
  --api-token <t>           require "Authorization: Bearer <t>" on /v1 (env FLOTILLA_API_TOKEN)
  --model-root <dir>        a folder deployments' model_path must stay inside (repeatable;
                            env FLOTILLA_MODEL_ROOTS, colon-separated; default: the current dir)
  --keep-replicas           leave replicas running on shutdown; the next start adopts them
                            (env FLOTILLA_KEEP_REPLICAS=1)
  --health-interval <seconds>
                            route health classification tick (env HEALTH_CHECK_INTERVAL_SEC,
                            default 5)
  --eviction-interval <seconds>
                            route cleanup sweep (env EVICTION_INTERVAL_SEC, default 60)
  --scaling-interval <seconds>
                            autoscaling evaluation tick (env SCALING_INTERVAL_SEC, default 2)
  --max-health-staleness <seconds>
                            health data older than this classifies a route DEGRADED (env
                            MAX_HEALTH_STALENESS_SEC, default 300)
  --route-health-ttl <seconds>
                            how long a health record lives in the health store; none left
                            classifies a route DEGRADED (env ROUTE_HEALTH_TTL_SEC, default 120)
  --capacity cpu=N,mem=SIZE,gpu=N
                            what replicas may reserve on this node, any subset (env
                            FLOTILLA_CAPACITY; mem in binary units: 32g = 32 GiB). Default: every
                            CPU, all memory, and the GPUs "nvidia-smi -L" lists (0 without it)
  --backend process|docker  how replicas run (env FLOTILLA_BACKEND, default process): local
                            processes, or Docker containers (needs a Docker engine: DOCKER_HOST
                            or the local socket)
  --data-plane own|haproxy  what serves --proxy-port (env FLOTILLA_DATA_PLANE, default own):
                            Flotilla's own proxy, or a managed HAProxy (the haproxy binary on
                            PATH, 2.6+) kept equal to the routing table through its runtime
                            API; README "HAProxy data plane" lists what it cannot do
  --role <role>             all (default), or one node of a cluster (env FLOTILLA_ROLE):
                            coordinator  API + actors, no proxy/prober (needs DATABASE_URL and
                                         REDIS_URL; run one, or several with ETCD_ENDPOINTS:
                                         one leads, the others stand by)
                            proxy        data plane only, following the table in Redis
                                         (needs REDIS_URL; /health /ready /metrics on --api-port)
                            prober       readiness prober only, sharing routes with the other
                                         probers (needs REDIS_URL; same endpoints)
  --log-level <level>       fatal, error, warn, info, debug, trace, silent (env
                            FLOTILLA_LOG_LEVEL, default info); logs are JSON lines on stderr
  -h, --help                this help

Prints "api <url>" and "proxy <url>" on stdout once both listen.`;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseOrExit('serve', HELP, argv, SERVE_FLAGS, { allowPositionals: false });
  if (typeof parsed === 'number') return parsed;
  let config: Readonly<ServeConfig>;
  try {
    config = parseServeConfig(parsed.values);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const line of err.lines) console.error(`flotilla serve: ${line}`);
      return 2;
    }
    throw err;
  }
  if (config.role === 'coordinator' && (!config.databaseUrl || !config.redisUrl)) {
    console.error(
      'flotilla serve: --role coordinator needs DATABASE_URL and REDIS_URL, so proxies and probers in other processes can follow it',
    );
    return 2;
  }
  if ((config.role === 'proxy' || config.role === 'prober') && !config.redisUrl) {
    console.error(
      `flotilla serve: --role ${config.role} needs REDIS_URL: it follows the routing table the coordinator publishes there`,
    );
    return 2;
  }
  if (config.role === 'proxy' || config.role === 'prober') return serveNode(config);
  return serve(config);
}

function logger(config: Readonly<ServeConfig>) {
  return pino(
    {
      level: config.logLevel,
      base: { pid: process.pid, role: config.role },
      redact: { paths: ['req.headers.authorization'], censor: '***' },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** Resolves with the exit code once a signal arrived and `close` finished. */
/** The data plane's settings, the same in a proxy node and in `all`. */
function proxyOptions(config: Readonly<ServeConfig>, log: ReturnType<typeof logger>) {
  return {
    host: config.host,
    port: config.proxyPort,
    dataPlane: config.dataPlane,
    // Each data plane names itself in its log lines (`component`): not tagged again here.
    logger: log,
    workers: config.proxyWorkers,
    workerLogLevel: config.logLevel,
  };
}

function untilSignal(log: ReturnType<typeof logger>, close: () => Promise<void>): Promise<number> {
  return new Promise<number>((resolve) => {
    let closing = false;
    const shutdown = (signal: NodeJS.Signals) => {
      if (closing) {
        log.warn({ signal }, 'second signal: exiting without a clean close');
        process.exit(1);
      }
      closing = true;
      log.info({ signal }, 'shutting down');
      const done = (code: number) => {
        process.off('SIGTERM', shutdown);
        process.off('SIGINT', shutdown);
        log.info({ code }, 'stopped');
        // Everything is closed; a handle some library forgot must not keep the process up.
        setTimeout(() => process.exit(code), 2_000).unref();
        resolve(code);
      };
      close().then(
        () => done(0),
        (err) => {
          log.error({ err }, 'close failed');
          done(1);
        },
      );
    };
    process.on('SIGTERM', shutdown);
    process.on('SIGINT', shutdown);
  });
}

/** `--role proxy` or `--role prober`: one stateless node following the coordinator via Redis. */
async function serveNode(config: Readonly<ServeConfig>): Promise<number> {
  const log = logger(config);
  log.info({ config: describeServeConfig(config) }, 'starting');
  const redisUrl = config.redisUrl as string;
  let node: { close(): Promise<void> };
  let registries: import('prom-client').Registry[] = [];
  let proxyUrl: string | null = null;
  const health: HealthParts = { role: config.role };
  try {
    if (config.role === 'proxy') {
      const p = await startProxyNode({
        redisUrl,
        keyPrefix: config.redisPrefix,
        ...proxyOptions(config, log),
      });
      registries = [p.proxy.metrics];
      proxyUrl = p.proxy.url;
      health.proxy = p.proxy;
      node = p;
    } else {
      const p = await startProberNode({
        redisUrl,
        keyPrefix: config.redisPrefix,
        ttlS: config.routeHealthTtlS,
        logger: log.child({ component: 'prober' }),
      });
      health.prober = p.prober;
      node = p;
    }
  } catch (err) {
    console.error(
      `flotilla serve: cannot start: ${err instanceof Error ? err.message : String(err)}`,
    );
    return 1;
  }
  const app = buildNodeApp({
    role: config.role,
    registries,
    ready: async () => ({ ready: true, missing: [] }),
    health: () => healthReport(health),
  });
  try {
    await app.listen({ host: config.host, port: config.apiPort });
  } catch (err) {
    console.error(
      `flotilla serve: cannot listen on ${config.host}:${config.apiPort}: ${err instanceof Error ? err.message : String(err)}`,
    );
    await node.close();
    return 1;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.apiPort;
  console.log(
    `${config.role === 'proxy' ? 'proxy_api' : config.role} http://${hostForUrl(config.host)}:${port}`,
  );
  if (proxyUrl) console.log(`proxy ${proxyUrl}`);
  return untilSignal(log, async () => {
    await app.close();
    await node.close();
  });
}

/** Exit code of a coordinator that lost its leadership (its supervisor restarts it). */
export const EXIT_LEADERSHIP_LOST = 3;

/**
 * Waits until this process leads the coordinators (etcd election). Meanwhile it answers
 * /health (200), /ready (503, "standby: waiting for leadership") and /v1/* (503) on the API
 * port, so a load balancer in front of the coordinators sends requests to the leader only.
 * Resolves with the leadership and the API port (the standby's port, kept for the API), or
 * with an exit code when a signal or an error ended the wait.
 */
async function awaitLeadership(
  config: Readonly<ServeConfig>,
  log: ReturnType<typeof logger>,
  etcd: Etcd3,
): Promise<{ leadership: Leadership; apiPort: number } | { exit: number }> {
  const id = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const standby = buildNodeApp({
    role: config.role,
    registries: [],
    ready: async () => ({ ready: false, missing: ['standby: waiting for leadership'] }),
  });
  standby.all('/v1/*', async (_req, reply) =>
    reply.code(503).send({
      error: {
        code: 'dependency_unavailable',
        message: 'standby: another coordinator leads; this one takes over if it goes',
        details: [],
      },
    }),
  );
  try {
    await standby.listen({ host: config.host, port: config.apiPort });
  } catch (err) {
    console.error(
      `flotilla serve: cannot listen on ${config.host}:${config.apiPort}: ${err instanceof Error ? err.message : String(err)}`,
    );
    return { exit: 1 };
  }
  const addr = standby.server.address();
  const apiPort = typeof addr === 'object' && addr ? addr.port : config.apiPort;
  const abort = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal }, 'signal while standing by: leaving the election');
    abort.abort();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    const leadership = await campaignForLeadership({
      client: etcd,
      id,
      signal: abort.signal,
      onStandby: (leader) => {
        console.log('standby: waiting for leadership');
        log.info({ leader }, 'standby: waiting for leadership');
      },
      onLost: (reason) => {
        // Another coordinator may be taking over: stop writing now, not after a clean close.
        log.fatal({ reason }, 'leadership lost; exiting');
        console.error(`flotilla serve: leadership lost (${reason}); exiting`);
        process.exit(EXIT_LEADERSHIP_LOST);
      },
    });
    log.info({ id, fence: leadership.fence }, 'elected coordinator leader');
    return { leadership, apiPort };
  } catch (err) {
    if (abort.signal.aborted) return { exit: 0 };
    log.error({ err }, 'leader election failed');
    console.error(
      `flotilla serve: leader election failed: ${err instanceof Error ? err.message : String(err)}`,
    );
    return { exit: 1 };
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    // Safe to ignore: the standby app only answered /health and /ready; the process goes on or exits.
    await standby.close().catch(() => {});
  }
}

/**
 * The node's capacity for replicas: as configured (`--capacity`), with the GPU count from
 * `nvidia-smi -L` when the configuration does not give one. Undefined: every default applies.
 */
export async function nodeCapacity(
  configured: Readonly<Partial<ResourceSlots>> | undefined,
  detectGpus: () => Promise<number | undefined> = detectGpuCount,
): Promise<Partial<ResourceSlots> | undefined> {
  if (configured?.gpu !== undefined) return { ...configured };
  const gpu = await detectGpus();
  if (gpu === undefined) return configured ? { ...configured } : undefined;
  return { ...configured, gpu };
}

/** `--backend docker`: the Docker backend; undefined lets createFlotilla use processes. */
async function replicaBackend(
  config: Readonly<ServeConfig>,
  capacity: Partial<ResourceSlots> | undefined,
): Promise<ReplicaBackend | undefined> {
  if (config.backend !== 'docker') return undefined;
  return createDockerBackend(capacity ? { capacity } : {});
}

/** Runs until SIGINT/SIGTERM; returns the exit code. */
export async function serve(config: Readonly<ServeConfig>): Promise<number> {
  const log = logger(config);
  log.info({ config: describeServeConfig(config) }, 'starting');

  // With etcd, only the elected leader runs the actors: campaign before the runtime starts.
  let etcd: Etcd3 | null = null;
  let leadership: Leadership | null = null;
  let apiPort = config.apiPort;
  const releaseEtcd = async () => {
    // Safe to ignore: an unresigned lease expires by itself within its TTL.
    await leadership?.resign().catch(() => {});
    etcd?.close();
  };
  if (config.etcdEndpoints) {
    etcd = new Etcd3({ hosts: [...config.etcdEndpoints] });
    const won = await awaitLeadership(config, log, etcd);
    if ('exit' in won) {
      etcd.close();
      // A failed campaign (etcd gone) must end the process so its supervisor restarts it: the
      // etcd client's handles outlive close() and would keep a process that serves nothing up.
      setTimeout(() => process.exit(won.exit), 2_000).unref();
      return won.exit;
    }
    leadership = won.leadership;
    apiPort = won.apiPort;
  }

  const metrics = createMetrics();
  let flotilla: Flotilla;
  let backend: ReplicaBackend | undefined;
  try {
    const capacity = await nodeCapacity(config.capacity);
    log.info({ capacity: capacity ?? 'machine', backend: config.backend ?? 'process' }, 'node');
    backend = await replicaBackend(config, capacity);
    flotilla = await createFlotilla({
      databaseUrl: config.databaseUrl,
      redisUrl: config.redisUrl,
      redisKeyPrefix: config.redisPrefix,
      etcdEndpoints: config.etcdEndpoints ? [...config.etcdEndpoints] : undefined,
      etcdFence: leadership?.fence,
      dataDir: config.dataDir,
      modelRoots: [...config.modelRoots],
      capacity,
      backend,
      routeHealthTtlS: config.routeHealthTtlS,
      keepReplicas: config.keepReplicas,
      proxy: config.role === 'coordinator' ? false : proxyOptions(config, log),
      prober: config.role !== 'coordinator',
      runtime: {
        healthCheckIntervalS: config.healthIntervalS,
        evictionIntervalS: config.evictionIntervalS,
        scalingIntervalS: config.scalingIntervalS,
        ...(config.maxHealthStalenessS !== undefined
          ? { maxHealthStalenessS: config.maxHealthStalenessS }
          : {}),
      },
      logger: log.child({ component: 'runtime' }),
      observeFlush: metrics.observeFlush,
      onHealthCheck: metrics.healthCheck,
    });
  } catch (err) {
    log.error({ err }, 'start failed');
    console.error(
      `flotilla serve: cannot start: ${err instanceof Error ? err.message : String(err)}`,
    );
    // A backend made here and not handed over yet (createFlotilla failed before its runtime).
    await backend?.close({ stopReplicas: false }).catch((closeErr: unknown) => {
      log.warn({ err: closeErr }, 'closing the replica backend after a failed start');
    });
    await releaseEtcd();
    return 1;
  }

  const app = buildApp({
    flotilla,
    metrics,
    token: config.apiToken,
    logger: log.child({ component: 'api' }),
    health: () =>
      healthReport({
        role: config.role,
        runtimeFailure: () => flotilla.runtime.failure,
        proxy: flotilla.proxy,
      }),
  });
  let apiUrl: string;
  try {
    await app.listen({ host: config.host, port: apiPort });
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : apiPort;
    apiUrl = `http://${hostForUrl(config.host)}:${port}`;
  } catch (err) {
    console.error(
      `flotilla serve: cannot listen on ${config.host}:${apiPort}: ${err instanceof Error ? err.message : String(err)}`,
    );
    // Safe to ignore: it never listened; the listen error above is what the operator sees.
    await app.close().catch(() => {});
    await flotilla.close();
    await releaseEtcd();
    return 1;
  }
  console.log(`api ${apiUrl}`);
  if (flotilla.proxyUrl) console.log(`proxy ${flotilla.proxyUrl}`);
  log.info({ api: apiUrl, proxy: flotilla.proxyUrl }, 'listening');

  return untilSignal(log, async () => {
    log.info({ keepReplicas: config.keepReplicas }, 'closing');
    try {
      await app.close();
      await flotilla.close();
    } finally {
      // Last: a standby takes over only once this process has stopped writing.
      await releaseEtcd();
    }
  });
}
