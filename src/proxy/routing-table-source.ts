/**
 * Where a proxy gets its routing table. In-process the coordinator hands tables over
 * directly (static source); a proxy in its own process follows Redis, where the coordinator
 * publishes each table as a full replace of one key plus a pub/sub notification, so any number
 * of proxies route by the same table.
 */
import { Redis } from 'ioredis';
import { type Logger, pino } from 'pino';
import { z } from 'zod';
import { FlotillaError } from '../domain/errors.ts';
import { BalancingStrategies, RouteStates, type RoutingTable } from '../domain/routing.ts';

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

/** Hash holding the current table: fields `version` and `table` (JSON). */
export function routingTableKey(keyPrefix: string): string {
  return `${keyPrefix}routing:table`;
}

/** Channel announcing a new table; the message is its version. */
export function routingTableChannel(keyPrefix: string): string {
  return `${keyPrefix}routing:changed`;
}

// Compare-and-set on the version, write, notify: atomic, so two publishers cannot make the
// stored table go back in version, and a notification always follows the write it announces.
// The channel is an argument, not a key (pub/sub channels are not keys in a cluster).
const PUBLISH_SCRIPT = `
local cur = redis.call('HGET', KEYS[1], 'version')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'table', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
`;

/**
 * Publishes `table` for every proxy following `keyPrefix`: a full replace of one key plus a
 * notification. Returns false (and changes nothing) when a newer table is already stored;
 * republishing the same version replaces it and notifies again.
 */
export async function publishRoutingTable(
  redis: Redis,
  keyPrefix: string,
  table: RoutingTable,
): Promise<boolean> {
  const applied = await redis.eval(
    PUBLISH_SCRIPT,
    1,
    routingTableKey(keyPrefix),
    String(table.version),
    JSON.stringify(table),
    routingTableChannel(keyPrefix),
  );
  return applied === 1;
}

const routeSchema = z.looseObject({
  routeId: z.string(),
  replicaId: z.string(),
  url: z.string(),
  state: z.enum(RouteStates),
  weight: z.number(),
});

const tableSchema = z.object({
  version: z.number(),
  // Loose: a deployment may carry fields this proxy reads defensively (admission).
  deployments: z.array(
    z.looseObject({
      deploymentId: z.string(),
      name: z.string(),
      routing: z.object({
        strategy: z.enum(BalancingStrategies),
        request_timeout_s: z.number().positive(),
        retries: z.number().int().min(0),
      }),
      routes: z.array(routeSchema),
    }),
  ),
  endpoints: z
    .array(
      z.object({
        name: z.string(),
        backends: z.array(z.object({ deployment: z.string(), weight: z.number() })),
      }),
    )
    .default([]),
});

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
  let loading: Promise<void> | undefined;
  let again = false;

  async function loadOnce(): Promise<void> {
    // The version first: the common re-read finds nothing new and skips the table itself.
    const stored = await client.hget(key, 'version');
    if (stored === null || closed || Number(stored) <= holder.table.version) return;
    const json = await client.hget(key, 'table');
    if (json === null || closed) return;
    const table = parseRoutingTable(json);
    if (table.version > holder.table.version) holder.offer(table);
  }

  /** Serialised re-read: concurrent triggers collapse into one more read after the current. */
  function reload(): Promise<void> {
    if (loading) {
      again = true;
      return loading;
    }
    loading = (async () => {
      do {
        again = false;
        try {
          await loadOnce();
        } catch (err) {
          log.warn({ err }, 'routing table re-read failed; keeping the current one');
        }
      } while (again && !closed);
      loading = undefined;
    })();
    return loading;
  }

  sub.on('message', (ch: string, message: string) => {
    if (ch !== channel || closed) return;
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
        const json = await client.hget(key, 'table');
        if (json !== null) holder.offer(parseRoutingTable(json));
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
        await loading?.catch(() => {});
        await Promise.all([
          client.quit().catch(() => client.disconnect()),
          sub.quit().catch(() => sub.disconnect()),
        ]);
      })();
      return closing;
    },
  };
}
