/**
 * The configuration of `flotilla serve`, parsed once with zod and frozen: its flags with their
 * environment equivalents. Flags win over the environment, which wins over defaults. Nothing
 * else in Flotilla reads `process.env` (the CLI client's settings are in ../client-config.ts).
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { type DataPlaneKind, DataPlaneKinds } from '../../data-plane/create-data-plane.ts';
import { parseMemory } from '../../domain/revision.ts';
import type { ResourceSlots } from '../../domain/session.ts';
import { defaultProxyWorkers } from '../../proxy/workers.ts';
import { ConfigError, isUrlWithScheme } from '../client-config.ts';
import type { FlagOptions } from '../flags.ts';

export { ConfigError } from '../client-config.ts';

export const ServeRoles = ['all', 'coordinator', 'proxy', 'prober'] as const;
export type ServeRole = (typeof ServeRoles)[number];

export const ReplicaBackendKinds = ['process', 'docker'] as const;
export type ReplicaBackendKind = (typeof ReplicaBackendKinds)[number];

export const LogLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export interface ServeConfig {
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  /** Key prefix in Redis, so several clusters (or test runs) can share one Redis. */
  redisPrefix: string;
  /** etcd: leader election of coordinators and the Traefik KV routing table (src/etcd/). */
  etcdEndpoints: readonly string[] | undefined;
  apiPort: number;
  proxyPort: number;
  /** Proxy processes sharing the proxy port; 1: the proxy runs in the serve process. */
  proxyWorkers: number;
  host: string;
  /** Absolute. */
  dataDir: string;
  apiToken: string | undefined;
  /** Absolute. */
  modelRoots: readonly string[];
  keepReplicas: boolean;
  healthIntervalS: number;
  evictionIntervalS: number;
  /** Autoscaling evaluation interval (SCALING_INTERVAL_SEC); default 2. */
  scalingIntervalS: number;
  /** MAX_HEALTH_STALENESS_SEC; undefined: the runtime's default (300). */
  maxHealthStalenessS: number | undefined;
  /** ROUTE_HEALTH_TTL_SEC; undefined: the health store's default (120). */
  routeHealthTtlS: number | undefined;
  /** The node's capacity for replicas; a missing slot is detected (cpu, mem, gpu). */
  capacity: Readonly<Partial<ResourceSlots>> | undefined;
  /** Replica backend; undefined: the process backend. */
  backend: ReplicaBackendKind | undefined;
  /** What serves the proxy port: Flotilla's own proxy or a managed HAProxy. */
  dataPlane: DataPlaneKind;
  role: ServeRole;
  logLevel: (typeof LogLevels)[number];
}

/** Where each setting comes from: its flag and environment variable (for messages). */
export const SERVE_SOURCES = {
  databaseUrl: { flag: '--database-url', env: 'DATABASE_URL' },
  redisUrl: { flag: '--redis-url', env: 'REDIS_URL' },
  redisPrefix: { flag: '--redis-prefix', env: 'FLOTILLA_REDIS_PREFIX' },
  etcdEndpoints: { flag: '--etcd-endpoints', env: 'ETCD_ENDPOINTS' },
  apiPort: { flag: '--api-port', env: 'FLOTILLA_API_PORT' },
  proxyPort: { flag: '--proxy-port', env: 'FLOTILLA_PROXY_PORT' },
  proxyWorkers: { flag: '--proxy-workers', env: 'FLOTILLA_PROXY_WORKERS' },
  host: { flag: '--host', env: 'FLOTILLA_HOST' },
  dataDir: { flag: '--data-dir', env: 'FLOTILLA_DATA_DIR' },
  apiToken: { flag: '--api-token', env: 'FLOTILLA_API_TOKEN' },
  modelRoots: { flag: '--model-root', env: 'FLOTILLA_MODEL_ROOTS' },
  keepReplicas: { flag: '--keep-replicas', env: 'FLOTILLA_KEEP_REPLICAS' },
  healthIntervalS: { flag: '--health-interval', env: 'HEALTH_CHECK_INTERVAL_SEC' },
  evictionIntervalS: { flag: '--eviction-interval', env: 'EVICTION_INTERVAL_SEC' },
  scalingIntervalS: { flag: '--scaling-interval', env: 'SCALING_INTERVAL_SEC' },
  maxHealthStalenessS: { flag: '--max-health-staleness', env: 'MAX_HEALTH_STALENESS_SEC' },
  routeHealthTtlS: { flag: '--route-health-ttl', env: 'ROUTE_HEALTH_TTL_SEC' },
  capacity: { flag: '--capacity', env: 'FLOTILLA_CAPACITY' },
  backend: { flag: '--backend', env: 'FLOTILLA_BACKEND' },
  dataPlane: { flag: '--data-plane', env: 'FLOTILLA_DATA_PLANE' },
  role: { flag: '--role', env: 'FLOTILLA_ROLE' },
  logLevel: { flag: '--log-level', env: 'FLOTILLA_LOG_LEVEL' },
} as const satisfies Record<keyof ServeConfig, { flag: string; env: string }>;

/**
 * serve's command-line options, named once in SERVE_SOURCES: each flag takes one value but
 * `--model-root` (repeatable) and `--keep-replicas` (a switch); then `--help`.
 */
export const SERVE_FLAGS: FlagOptions = {
  ...Object.fromEntries(
    Object.values(SERVE_SOURCES).map(({ flag }) => [flag.slice(2), { type: 'string' }]),
  ),
  'model-root': { type: 'string', multiple: true },
  'keep-replicas': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

const url = (schemes: string[]) =>
  z.string().refine((s) => isUrlWithScheme(s, schemes), {
    error: `expected a ${schemes.map((s) => `${s}://`).join(' or ')} URL`,
  });
const port = z.coerce
  .number({ error: 'expected a port number' })
  .int({ error: 'expected a port number' })
  .min(0)
  .max(65535);
const seconds = z.coerce.number({ error: 'expected seconds' }).positive().max(86_400);
const bool = z
  .union([z.boolean(), z.enum(['1', '0', 'true', 'false', 'yes', 'no', ''])])
  .transform((v) => v === true || v === '1' || v === 'true' || v === 'yes');

const CAPACITY_SLOTS = ['cpu', 'mem', 'gpu'] as const;

/**
 * `cpu=8,mem=32g,gpu=2` (any subset, any order) -> slots; mem takes binary units as
 * resource_slots.mem does (`32g` = 32 GiB). Returns the problem as a string instead.
 */
export function parseCapacity(text: string): Partial<ResourceSlots> | string {
  const out: Partial<ResourceSlots> = {};
  for (const part of text.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    const key = (eq < 0 ? item : item.slice(0, eq)).trim();
    const value = eq < 0 ? '' : item.slice(eq + 1).trim();
    if (!(CAPACITY_SLOTS as readonly string[]).includes(key)) {
      return `unknown slot ${JSON.stringify(key)} (expected cpu=N,mem=SIZE,gpu=N)`;
    }
    const slot = key as (typeof CAPACITY_SLOTS)[number];
    if (slot in out) return `${slot} given twice`;
    if (slot === 'mem') {
      const bytes = parseMemory(value);
      if (bytes === null)
        return `mem: expected a size like 32g or 512m, got ${JSON.stringify(value)}`;
      out.mem = bytes;
      continue;
    }
    const n = value === '' ? Number.NaN : Number(value);
    if (!Number.isFinite(n) || n < 0) {
      return `${slot}: must be a number ≥ 0, got ${JSON.stringify(value)}`;
    }
    if (slot === 'gpu' && !Number.isInteger(n)) {
      return `gpu: must be a whole number ≥ 0, got ${JSON.stringify(value)}`;
    }
    out[slot] = n;
  }
  if (Object.keys(out).length === 0) return 'expected cpu=N,mem=SIZE,gpu=N (any of them)';
  return out;
}

const capacity = z.string().transform((s, ctx) => {
  const r = parseCapacity(s);
  if (typeof r === 'string') {
    ctx.addIssue({ code: 'custom', message: r });
    return z.NEVER;
  }
  return Object.freeze(r);
});

const serveSchema = z.object({
  databaseUrl: url(['postgres', 'postgresql']).optional(),
  redisUrl: url(['redis', 'rediss']).optional(),
  redisPrefix: z.string().min(1).max(200).default('flotilla:'),
  etcdEndpoints: z
    .string()
    .transform((s) =>
      s
        .split(',')
        .map((e) => e.trim())
        .filter(Boolean),
    )
    .pipe(z.array(url(['http', 'https'])).min(1, { error: 'expected host URLs, comma separated' }))
    .optional(),
  apiPort: port.default(8080),
  proxyPort: port.default(8000),
  proxyWorkers: z.coerce
    .number({ error: 'expected a whole number of processes' })
    .int({ error: 'expected a whole number of processes' })
    .min(1)
    .max(256)
    .default(defaultProxyWorkers),
  host: z.string().min(1).default('127.0.0.1'),
  dataDir: z.string().min(1).default('.flotilla'),
  apiToken: z.string().min(1, { error: 'must not be empty' }).optional(),
  modelRoots: z.array(z.string().min(1)).optional(),
  keepReplicas: bool.default(false),
  healthIntervalS: seconds.default(5),
  evictionIntervalS: seconds.default(60),
  scalingIntervalS: seconds.default(2),
  maxHealthStalenessS: seconds.optional(),
  routeHealthTtlS: seconds.optional(),
  capacity: capacity.optional(),
  backend: z.enum(ReplicaBackendKinds).optional(),
  dataPlane: z.enum(DataPlaneKinds).default('own'),
  role: z.enum(ServeRoles).default('all'),
  logLevel: z.enum(LogLevels).default('info'),
});

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

/** What `parseArgs` gives for SERVE_FLAGS. */
type FlagValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/**
 * The serve configuration from parsed flags (keys as written, without `--`) and the
 * environment. Throws ConfigError. A non-loopback host needs a token.
 */
export function parseServeConfig(
  flags: FlagValues,
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): Readonly<ServeConfig> {
  const raw: Record<string, unknown> = {};
  for (const [key, src] of Object.entries(SERVE_SOURCES)) {
    const flag = flags[src.flag.slice(2)];
    const fromEnv = env[src.env];
    if (key === 'modelRoots') {
      const list = Array.isArray(flag) ? flag : undefined;
      raw[key] = list?.length ? list : fromEnv ? fromEnv.split(':').filter(Boolean) : undefined;
      continue;
    }
    raw[key] = flag !== undefined ? flag : fromEnv === '' ? undefined : fromEnv;
  }
  const r = serveSchema.safeParse(raw);
  if (!r.success) {
    throw new ConfigError(
      r.error.issues.map((i) => {
        const key = String(i.path[0]) as keyof typeof SERVE_SOURCES;
        const src = SERVE_SOURCES[key];
        const got = raw[key] === undefined ? '' : `, got ${JSON.stringify(raw[key])}`;
        return `${src ? `${src.flag} / ${src.env}` : key}: ${i.message}${key === 'apiToken' ? '' : got}`;
      }),
    );
  }
  const c = r.data;
  if (!isLoopback(c.host) && !c.apiToken) {
    throw new ConfigError([
      `refusing to listen on ${c.host} without an API token: set FLOTILLA_API_TOKEN or --api-token (or use --host 127.0.0.1)`,
    ]);
  }
  return Object.freeze({
    ...c,
    // A proxy node forks workers only when asked: the cores-minus-one default is serve's.
    proxyWorkers: raw.proxyWorkers === undefined && c.role === 'proxy' ? 1 : c.proxyWorkers,
    databaseUrl: c.databaseUrl,
    redisUrl: c.redisUrl,
    etcdEndpoints: c.etcdEndpoints ? Object.freeze([...c.etcdEndpoints]) : undefined,
    apiToken: c.apiToken,
    maxHealthStalenessS: c.maxHealthStalenessS,
    routeHealthTtlS: c.routeHealthTtlS,
    capacity: c.capacity,
    backend: c.backend,
    dataDir: resolve(cwd, c.dataDir),
    modelRoots: Object.freeze((c.modelRoots ?? [cwd]).map((p) => resolve(cwd, p))),
  });
}

/** A copy safe to log: the token hidden, passwords in URLs hidden. */
export function describeServeConfig(c: Readonly<ServeConfig>): Record<string, unknown> {
  const hide = (u: string | undefined) => {
    if (!u) return u;
    try {
      const parsed = new URL(u);
      if (parsed.password) parsed.password = '***';
      return parsed.toString();
    } catch {
      return '***';
    }
  };
  return {
    ...c,
    databaseUrl: hide(c.databaseUrl) ?? 'embedded',
    redisUrl: hide(c.redisUrl) ?? 'in-process',
    apiToken: c.apiToken ? '***' : undefined,
  };
}
