/**
 * `flotilla serve`: the composition root. Parses the configuration once (src/config.ts),
 * creates the metrics registry, the embedded Flotilla (store, backend, health, runtime,
 * prober, proxy) and the HTTP API, prints one line per listener, and on SIGINT/SIGTERM closes
 * everything (replicas stopped unless --keep-replicas, so the next start adopts them).
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { buildApp } from '../../api/build-app.ts';
import { createMetrics } from '../../api/metrics.ts';
import {
  ConfigError,
  describeServeConfig,
  parseServeConfig,
  type ServeConfig,
} from '../../config.ts';
import { createFlotilla, type Flotilla } from '../../index.ts';
import { buildNodeApp } from '../../roles/node-app.ts';
import { startProberNode } from '../../roles/prober-node.ts';
import { startProxyNode } from '../../roles/proxy-node.ts';

const HELP = `usage: flotilla serve [options]

Runs every Flotilla role (API, coordinator, prober, proxy) in this process. Without
DATABASE_URL it keeps its state in an embedded PostgreSQL (PGlite) under --data-dir; without
REDIS_URL health data stays in memory. Flags win over environment variables.

options:
  --database-url <url>      PostgreSQL (env DATABASE_URL; default: embedded under --data-dir)
  --redis-url <url>         Redis for health data and the routing table (env REDIS_URL;
                            default: in-process)
  --redis-prefix <p>        key prefix in Redis (env FLOTILLA_REDIS_PREFIX, default flotilla:)
  --etcd-endpoints <urls>   comma-separated etcd URLs (env ETCD_ENDPOINTS). Accepted and
                            recorded only: the etcd integration (Traefik KV, leader election)
                            arrives with a later issue
  --api-port <n>            HTTP API port (env FLOTILLA_API_PORT, default 8080; 0: any free)
  --proxy-port <n>          data-plane proxy port (env FLOTILLA_PROXY_PORT, default 8000)
  --host <addr>             listen address of both (env FLOTILLA_HOST, default 127.0.0.1);
                            any non-loopback address needs an API token
  --data-dir <dir>          embedded database, replica state and logs (env FLOTILLA_DATA_DIR,
                            default ./.flotilla)
  --api-token <t>           require "Authorization: Bearer <t>" on /v1 (env FLOTILLA_API_TOKEN)
  --model-root <dir>        a folder deployments' model_path must stay inside (repeatable;
                            env FLOTILLA_MODEL_ROOTS, colon-separated; default: the current dir)
  --keep-replicas           leave replicas running on shutdown; the next start adopts them
                            (env FLOTILLA_KEEP_REPLICAS=1)
  --health-interval <s>     route health classification tick (env HEALTH_CHECK_INTERVAL_SEC,
                            default 5)
  --eviction-interval <s>   route cleanup sweep (env EVICTION_INTERVAL_SEC, default 60)
  --role <role>             all (default), or one node of a cluster (env FLOTILLA_ROLE):
                            coordinator  API + actors, no proxy/prober (needs DATABASE_URL and
                                         REDIS_URL; run ONE: leader election via etcd is a
                                         later issue)
                            proxy        data plane only, following the table in Redis
                                         (needs REDIS_URL; /health /ready /metrics on --api-port)
                            prober       readiness prober only, sharing routes with the other
                                         probers (needs REDIS_URL; same endpoints)
  --log-level <level>       fatal, error, warn, info, debug, trace, silent (env
                            FLOTILLA_LOG_LEVEL, default info); logs are JSON lines on stderr
  -h, --help                this help

Prints "api <url>" and "proxy <url>" on stdout once both listen.`;

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        'database-url': { type: 'string' },
        'redis-url': { type: 'string' },
        'redis-prefix': { type: 'string' },
        'etcd-endpoints': { type: 'string' },
        'api-port': { type: 'string' },
        'proxy-port': { type: 'string' },
        host: { type: 'string' },
        'data-dir': { type: 'string' },
        'api-token': { type: 'string' },
        'model-root': { type: 'string', multiple: true },
        'keep-replicas': { type: 'boolean' },
        'health-interval': { type: 'string' },
        'eviction-interval': { type: 'string' },
        role: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    console.error(
      `flotilla serve: ${(err as Error).message}\nRun \`flotilla serve --help\` for usage.`,
    );
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let config: Readonly<ServeConfig>;
  try {
    config = parseServeConfig(values);
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
          log.error({ err: String(err) }, 'close failed');
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
  try {
    if (config.role === 'proxy') {
      const p = await startProxyNode({
        redisUrl,
        keyPrefix: config.redisPrefix,
        host: config.host,
        port: config.proxyPort,
        logger: log.child({ component: 'proxy' }),
      });
      registries = [p.proxy.metrics];
      proxyUrl = p.proxy.url;
      node = p;
    } else {
      node = await startProberNode({
        redisUrl,
        keyPrefix: config.redisPrefix,
        logger: log.child({ component: 'prober' }),
      });
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

/** Runs until SIGINT/SIGTERM; returns the exit code. */
export async function serve(config: Readonly<ServeConfig>): Promise<number> {
  const log = logger(config);
  log.info({ config: describeServeConfig(config) }, 'starting');
  if (config.etcdEndpoints) {
    log.warn(
      { etcdEndpoints: config.etcdEndpoints },
      'ETCD_ENDPOINTS recorded; this build does not use etcd yet',
    );
  }

  const metrics = createMetrics();
  let flotilla: Flotilla;
  try {
    flotilla = await createFlotilla({
      databaseUrl: config.databaseUrl,
      redisUrl: config.redisUrl,
      redisKeyPrefix: config.redisPrefix,
      dataDir: config.dataDir,
      modelRoots: [...config.modelRoots],
      keepReplicas: config.keepReplicas,
      proxy: config.role === 'coordinator' ? false : { host: config.host, port: config.proxyPort },
      prober: config.role !== 'coordinator',
      runtime: {
        healthCheckIntervalS: config.healthIntervalS,
        evictionIntervalS: config.evictionIntervalS,
      },
      logger: log.child({ component: 'runtime' }),
      observeFlush: metrics.observeFlush,
      onHealthCheck: metrics.healthCheck,
    });
  } catch (err) {
    log.error({ err: String(err) }, 'start failed');
    console.error(
      `flotilla serve: cannot start: ${err instanceof Error ? err.message : String(err)}`,
    );
    return 1;
  }

  const app = buildApp({
    flotilla,
    metrics,
    token: config.apiToken,
    logger: log.child({ component: 'api' }),
  });
  let apiUrl: string;
  try {
    await app.listen({ host: config.host, port: config.apiPort });
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : config.apiPort;
    apiUrl = `http://${hostForUrl(config.host)}:${port}`;
  } catch (err) {
    console.error(
      `flotilla serve: cannot listen on ${config.host}:${config.apiPort}: ${err instanceof Error ? err.message : String(err)}`,
    );
    await app.close().catch(() => {});
    await flotilla.close();
    return 1;
  }
  console.log(`api ${apiUrl}`);
  if (flotilla.proxyUrl) console.log(`proxy ${flotilla.proxyUrl}`);
  log.info({ api: apiUrl, proxy: flotilla.proxyUrl }, 'listening');

  return untilSignal(log, async () => {
    log.info({ keepReplicas: config.keepReplicas }, 'closing');
    await app.close();
    await flotilla.close();
  });
}
