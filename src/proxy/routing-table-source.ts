/**
 * Where a proxy gets its routing table. In-process the coordinator hands tables over
 * directly (static source); a proxy in its own process follows Redis, where the coordinator
 * writes one hash field per deployment plus a pub/sub notification naming what changed, so any
 * number of proxies route by the same table and a change costs the same whatever the fleet.
 */
import { Redis } from 'ioredis';
import { type Logger, pino } from 'pino';
import { z } from 'zod';
import { FlotillaError } from '../domain/errors.ts';
import {
  BalancingStrategies,
  type DeploymentRoutes,
  type EndpointRoutes,
  RouteStates,
  type RoutingTable,
} from '../domain/routing.ts';
import {
  changeOf,
  lazyRoutingTable,
  type RoutingTableChange,
  withChange,
} from '../domain/routing-change.ts';
import { serialQueue } from '../domain/serial-queue.ts';

/**
 * A routing table feed.
 *
 * Invariants: `current()` always returns a table (an empty version-0 one before the first
 * arrives) and never goes back to an older version; `subscribe` listeners are called, in
 * order, with each table that replaces the current one, never with an older one; `close`
 * stops all delivery and frees connections, and is idempotent.
 */
export interface RoutingTableSource {
  current(): RoutingTable;
  subscribe(listener: (t: RoutingTable) => void): () => void;
  close(): Promise<void>;
}

/** The table before any is known. */
export const EMPTY_ROUTING_TABLE: RoutingTable = Object.freeze({
  version: 0,
  deployments: [],
  endpoints: [],
}) as RoutingTable;

/** Holds the current table and fans it out; the part every source shares. */
class TableHolder {
  table: RoutingTable;
  private readonly listeners = new Set<(t: RoutingTable) => void>();

  constructor(
    initial: RoutingTable,
    private readonly log: Logger,
  ) {
    this.table = initial;
  }

  /** Replaces the table unless `t` is older; true when it was taken. */
  offer(t: RoutingTable): boolean {
    if (t.version < this.table.version) return false;
    this.table = t;
    for (const l of [...this.listeners]) {
      try {
        l(t);
      } catch (err) {
        this.log.error({ err }, 'routing table listener failed');
      }
    }
    return true;
  }

  subscribe(listener: (t: RoutingTable) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  clear(): void {
    this.listeners.clear();
  }
}

/** An in-process source: the coordinator calls `set` on each change. */
export interface StaticTableSource extends RoutingTableSource {
  /** Publishes `table` to subscribers; ignored (false) when older than the current one. */
  set(table: RoutingTable): boolean;
}

/** An in-process source starting at `initial` (an empty table by default). */
export function createStaticTableSource(
  initial: RoutingTable = EMPTY_ROUTING_TABLE,
): StaticTableSource {
  const holder = new TableHolder(initial, pino({ level: 'silent' }));
  let closed = false;
  return {
    current: () => holder.table,
    subscribe: (l) => holder.subscribe(l),
    set: (t) => (closed ? false : holder.offer(t)),
    async close() {
      closed = true;
      holder.clear();
    },
  };
}

// ---------------------------------------------------------------------------------------
// Redis

/**
 * Hash holding the current table: field `version`, field `endpoints` (JSON) and one field per
 * deployment, `d:<deploymentId>` (its entry as JSON), so a change writes only the deployments
 * it touches.
 */
export function routingTableKey(keyPrefix: string): string {
  return `${keyPrefix}routing:table`;
}

/**
 * Channel announcing a new table. The message is its version after a full replace, or a
 * change (`{"v":version,"b":base,"u":[ids upserted],"r":[ids removed],"e":endpoints changed}`)
 * after a per-deployment write.
 */
export function routingTableChannel(keyPrefix: string): string {
  return `${keyPrefix}routing:changed`;
}

const DEPLOYMENT_FIELD = 'd:';
/** Field-value pairs per HSET call in the scripts (Lua's unpack has a stack limit). */
const HSET_CHUNK = 500;

// Compare-and-set on the version, write, notify: atomic, so two publishers cannot make the
// stored table go back in version, and a notification always follows the write it announces.
// The channel is an argument, not a key (pub/sub channels are not keys in a cluster).
// ARGV: version, channel, endpoints JSON, then field/value pairs of every deployment.
const PUBLISH_FULL_SCRIPT = `
local cur = redis.call('HGET', KEYS[1], 'version')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'endpoints', ARGV[3])
local i = 4
while i <= #ARGV do
  local last = math.min(i + ${HSET_CHUNK * 2 - 1}, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
`;

// The same guarantees for one change; it applies only on top of the version it was built on
// (else -1: the caller writes the whole table instead).
// ARGV: version, base, channel, message, endpoints JSON or '', upsert count n, n field/value
// pairs, then the fields to delete.
const PUBLISH_CHANGE_SCRIPT = `
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if cur > tonumber(ARGV[1]) then return 0 end
if cur ~= tonumber(ARGV[2]) then return -1 end
redis.call('HSET', KEYS[1], 'version', ARGV[1])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'endpoints', ARGV[5]) end
local n = tonumber(ARGV[6])
local i = 7
local stop = 6 + 2 * n
while i <= stop do
  local last = math.min(i + ${HSET_CHUNK * 2 - 1}, stop)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
if stop < #ARGV then redis.call('HDEL', KEYS[1], unpack(ARGV, stop + 1, #ARGV)) end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`;

/** A change as announced on the channel. */
interface ChangeMessage {
  v: number;
  b: number;
  u: string[];
  r: string[];
  e: boolean;
}

const changeMessageSchema = z.object({
  v: z.number(),
  b: z.number(),
  u: z.array(z.string()),
  r: z.array(z.string()),
  e: z.boolean(),
});

/** A change message, or null for a plain version (a full replace). */
function parseChangeMessage(message: string): ChangeMessage | null {
  if (!message.startsWith('{')) return null;
  try {
    const r = changeMessageSchema.safeParse(JSON.parse(message));
    return r.success ? r.data : null;
  } catch {
    // Not JSON: treated as a version, re-read in full.
    return null;
  }
}

async function publishFull(redis: Redis, keyPrefix: string, table: RoutingTable): Promise<boolean> {
  const args: string[] = [
    String(table.version),
    routingTableChannel(keyPrefix),
    JSON.stringify(table.endpoints ?? []),
  ];
  for (const d of table.deployments) {
    args.push(`${DEPLOYMENT_FIELD}${d.deploymentId}`, JSON.stringify(d));
  }
  const applied = await redis.eval(PUBLISH_FULL_SCRIPT, 1, routingTableKey(keyPrefix), ...args);
  return applied === 1;
}

/**
 * Publishes `table` for every proxy following `keyPrefix`, plus a notification. A table that
 * comes with its change (`changeOf`) writes only the deployments the change names when the
 * stored table is the change's base, and the whole table otherwise. Returns false (and
 * changes nothing) when a newer table is already stored; republishing the same version
 * replaces it and notifies again.
 */
export async function publishRoutingTable(
  redis: Redis,
  keyPrefix: string,
  table: RoutingTable,
): Promise<boolean> {
  const change = changeOf(table);
  if (!change || change.version !== table.version) return publishFull(redis, keyPrefix, table);
  const message: ChangeMessage = {
    v: change.version,
    b: change.base,
    u: change.upserted.map((d) => d.deploymentId),
    r: change.removed.map((d) => d.deploymentId),
    e: change.endpointsChanged,
  };
  const args: string[] = [
    String(change.version),
    String(change.base),
    routingTableChannel(keyPrefix),
    JSON.stringify(message),
    change.endpointsChanged ? JSON.stringify(table.endpoints ?? []) : '',
    String(change.upserted.length),
  ];
  for (const d of change.upserted) {
    args.push(`${DEPLOYMENT_FIELD}${d.deploymentId}`, JSON.stringify(d));
  }
  for (const d of change.removed) args.push(`${DEPLOYMENT_FIELD}${d.deploymentId}`);
  const applied = await redis.eval(PUBLISH_CHANGE_SCRIPT, 1, routingTableKey(keyPrefix), ...args);
  if (applied === -1) return publishFull(redis, keyPrefix, table);
  return applied === 1;
}

const routeSchema = z.looseObject({
  routeId: z.string(),
  replicaId: z.string(),
  url: z.string(),
  state: z.enum(RouteStates),
  weight: z.number(),
});

// Loose: a deployment may carry fields this proxy reads defensively (admission).
const deploymentSchema = z.looseObject({
  deploymentId: z.string(),
  name: z.string(),
  routing: z.object({
    strategy: z.enum(BalancingStrategies),
    request_timeout_s: z.number().positive(),
    retries: z.number().int().min(0),
    // Kept for proxies fed from Redis too (docs: the per-deployment path allow-list).
    allowed_path_prefixes: z.array(z.string()).optional(),
  }),
  routes: z.array(routeSchema),
});

const endpointsSchema = z.array(
  z.object({
    name: z.string(),
    backends: z.array(z.object({ deployment: z.string(), weight: z.number() })),
  }),
);

const tableSchema = z.object({
  version: z.number(),
  deployments: z.array(deploymentSchema),
  endpoints: endpointsSchema.default([]),
});

function parseJson<T>(what: string, json: string, schema: z.ZodType<T>): T {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (cause) {
    throw new FlotillaError('validation', `stored ${what} is not JSON`, { cause });
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    throw new FlotillaError('validation', `stored ${what} is malformed`, {
      details: r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
    });
  }
  return r.data;
}

function parseDeployment(json: string): DeploymentRoutes {
  return parseJson('routing table entry', json, deploymentSchema) as DeploymentRoutes;
}

function parseEndpoints(json: string | null | undefined): EndpointRoutes[] {
  return json ? parseJson('endpoint list', json, endpointsSchema) : [];
}

/** The table a stored hash (HGETALL of `routingTableKey`) holds; null when none is stored. */
export function parseStoredTable(hash: Record<string, string>): {
  version: number;
  entries: Map<string, DeploymentRoutes>;
  endpoints: EndpointRoutes[];
} | null {
  if (hash.version === undefined) return null;
  const entries = new Map<string, DeploymentRoutes>();
  for (const [field, json] of Object.entries(hash)) {
    if (!field.startsWith(DEPLOYMENT_FIELD)) continue;
    const d = parseDeployment(json);
    entries.set(d.deploymentId, d);
  }
  return { version: Number(hash.version), entries, endpoints: parseEndpoints(hash.endpoints) };
}

/** Parses a stored table; a FlotillaError naming what is wrong when it is not one. */
export function parseRoutingTable(json: string): RoutingTable {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (cause) {
    throw new FlotillaError('validation', 'stored routing table is not JSON', { cause });
  }
  const r = tableSchema.safeParse(raw);
  if (!r.success) {
    throw new FlotillaError('validation', 'stored routing table is malformed', {
      details: r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
    });
  }
  return r.data as RoutingTable;
}

/** Options of `createRedisTableSource`. */
export interface RedisTableSourceOptions {
  url: string;
  /** Same prefix the coordinator publishes under. */
  keyPrefix: string;
  logger?: Logger;
  /**
   * Safety re-read interval: pub/sub is at-most-once (a message sent while the subscriber
   * reconnects is lost), so the stored version is checked this often and the table read when
   * it moved. Cheap (one HGET of a number). Default 1 s, which keeps the one-second bound.
   */
  resyncIntervalMs?: number;
  /** How long to wait for Redis at start before failing. Default 10 s. */
  connectTimeoutMs?: number;
}

/**
 * Follows the table stored under `keyPrefix`: loads it at start (resolving once Redis has
 * answered, with an empty table if none is stored yet), re-reads it on each notification and
 * after every reconnect, and hands each newer version to subscribers.
 */
export async function createRedisTableSource(
  opts: RedisTableSourceOptions,
): Promise<RoutingTableSource> {
  const log = (opts.logger ?? pino({ level: 'silent' })).child({
    component: 'routing-table-source',
  });
  const holder = new TableHolder(EMPTY_ROUTING_TABLE, log);
  const key = routingTableKey(opts.keyPrefix);
  const channel = routingTableChannel(opts.keyPrefix);
  // Named so an operator (or a test) can tell them apart in CLIENT LIST.
  const name = (role: string) => `flotilla-table-${role}:${opts.keyPrefix}`.replace(/\s/g, '_');
  const client = new Redis(opts.url, {
    lazyConnect: true,
    maxRetriesPerRequest: 2,
    connectionName: name('cmd'),
  });
  const sub = new Redis(opts.url, {
    lazyConnect: true,
    maxRetriesPerRequest: 2,
    connectionName: name('sub'),
  });
  client.on('error', (err) => log.debug({ err }, 'redis (commands) error'));
  sub.on('error', (err) => log.debug({ err }, 'redis (subscriber) error'));
  let closed = false;
  /** The entries of the current table, by deployment id (what a change applies to). */
  let entries = new Map<string, DeploymentRoutes>();
  let endpoints: EndpointRoutes[] = [];

  /** Takes a whole stored table (a full replace). */
  function takeFull(stored: NonNullable<ReturnType<typeof parseStoredTable>>): void {
    if (stored.version < holder.table.version) return;
    entries = stored.entries;
    endpoints = stored.endpoints;
    holder.offer({ version: stored.version, deployments: [...entries.values()], endpoints });
  }

  /** Reads the stored table when its version moved past ours. */
  async function loadFull(): Promise<void> {
    // The version first: the common re-read finds nothing new and skips the table itself.
    const stored = await client.hget(key, 'version');
    if (stored === null || closed || Number(stored) <= holder.table.version) return;
    const parsed = parseStoredTable(await client.hgetall(key));
    if (parsed && !closed && parsed.version > holder.table.version) takeFull(parsed);
  }

  /**
   * Applies an announced change by reading only the deployments it names; falls back to a full
   * read when we do not hold its base or the stored table moved on meanwhile.
   */
  async function applyChange(m: ChangeMessage): Promise<void> {
    if (m.v <= holder.table.version) return;
    if (m.b !== holder.table.version) return loadFull();
    const fields = ['version', 'endpoints', ...m.u.map((id) => `${DEPLOYMENT_FIELD}${id}`)];
    const values = await client.hmget(key, ...fields);
    if (closed) return;
    if (Number(values[0]) !== m.v) return loadFull();
    const upserted: DeploymentRoutes[] = [];
    for (const json of values.slice(2)) {
      if (json === null) return loadFull();
      upserted.push(parseDeployment(json));
    }
    if (m.e) endpoints = parseEndpoints(values[1]);
    const removed: RoutingTableChange['removed'][number][] = [];
    for (const id of m.r) {
      const old = entries.get(id);
      if (old && entries.delete(id)) removed.push({ deploymentId: id, name: old.name });
    }
    for (const d of upserted) entries.set(d.deploymentId, d);
    const current = entries;
    const table = lazyRoutingTable(m.v, endpoints, () => [...current.values()]);
    holder.offer(
      withChange(table, { version: m.v, base: m.b, upserted, removed, endpointsChanged: m.e }),
    );
  }

  // Every read runs in one queue, in the order its trigger arrived, so changes apply in order.
  const queue = serialQueue({
    closed: () => closed,
    onError: (err) => log.warn({ err }, 'routing table re-read failed; keeping the current one'),
  });
  /** A full re-read, unless one is already waiting in the queue. */
  let fullQueued = false;
  function reload(): Promise<void> {
    if (fullQueued) return queue.idle();
    fullQueued = true;
    return queue.push(async () => {
      fullQueued = false;
      await loadFull();
    });
  }

  sub.on('message', (ch: string, message: string) => {
    if (ch !== channel || closed) return;
    const m = parseChangeMessage(message);
    if (m) {
      void queue.push(() => applyChange(m));
      return;
    }
    if (Number(message) <= holder.table.version) return;
    void reload();
  });
  let firstReady = true;
  sub.on('ready', () => {
    // ioredis resubscribes on reconnect; what was published meanwhile is read here.
    if (firstReady) firstReady = false;
    else if (!closed) void reload();
  });

  const connectTimeout = opts.connectTimeoutMs ?? 10_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      (async () => {
        await Promise.all([client.connect(), sub.connect()]);
        // Subscribe before the first read: a table published in between is not missed.
        await sub.subscribe(channel);
        const parsed = parseStoredTable(await client.hgetall(key));
        if (parsed) takeFull(parsed);
      })(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new FlotillaError(
                'dependency_unavailable',
                `redis did not answer within ${connectTimeout} ms`,
                {
                  retryable: true,
                },
              ),
            ),
          connectTimeout,
        );
      }),
    ]);
  } catch (err) {
    closed = true;
    client.disconnect();
    sub.disconnect();
    throw err;
  } finally {
    clearTimeout(timer);
  }

  const resync = setInterval(() => void reload(), opts.resyncIntervalMs ?? 1_000);
  resync.unref();

  let closing: Promise<void> | undefined;
  return {
    current: () => holder.table,
    subscribe: (l) => holder.subscribe(l),
    close() {
      closing ??= (async () => {
        closed = true;
        clearInterval(resync);
        holder.clear();
        // Reads in the queue log their own failures; waited for so none runs after quit.
        await queue.idle();
        await Promise.all([
          client.quit().catch(() => client.disconnect()),
          sub.quit().catch(() => sub.disconnect()),
        ]);
      })();
      return closing;
    },
  };
}
