import { Redis, type RedisOptions } from 'ioredis';
import { FlotillaError } from '../domain/errors.ts';
import type { HealthRecord } from '../domain/health.ts';
import { defaultHealthLogger, errorText, type HealthLogger } from './health-log.ts';
import { decodeHealthRecord, encodeHealthRecord } from './health-record-codec.ts';
import type { HealthStore } from './health-store.ts';
import { keepConnected, MANAGED_RECONNECT, type Reconnector } from './redis-reconnect.ts';

export interface RedisHealthStoreOptions {
  url: string;
  /** Prepended to every key and to the change channel. Default `flotilla:`. */
  keyPrefix?: string;
  /** Keys per MGET in `readMany`. Default 1000. */
  batchSize?: number;
  /** A command that gets no reply in this time fails instead of stalling a tick. Default 5000. */
  commandTimeoutMs?: number;
  /**
   * `ping` answers false when Redis has not answered within this time (readiness checks must
   * answer fast during an outage, not after the command timeout). Default 1000.
   */
  pingTimeoutMs?: number;
  /**
   * While the connection is down, a command first tries to connect (at once, at most every
   * 100 ms) and waits this long for it before failing. Connection refused fails at once; this
   * bounds the wait on an unreachable host. Default 1000.
   */
  connectWaitMs?: number;
  /** Longest delay between background reconnect attempts (ms). Default 500. */
  reconnectMaxDelayMs?: number;
  logger?: HealthLogger;
}

/**
 * Key layout under the prefix P (readable with redis-cli, for the DEGRADED runbook):
 * - `P health:route:<routeId>`  compact JSON HealthRecord, PX = the write's TTL
 * - `P health:changes`          pub/sub channel of JSON HealthRecords
 * - `P health:probers`          sorted set: prober id scored by its expiry (Redis server ms)
 */
export function healthKeys(prefix = 'flotilla:') {
  return {
    route: (routeId: string) => `${prefix}health:route:${routeId}`,
    channel: `${prefix}health:changes`,
    probers: `${prefix}health:probers`,
  };
}

// Membership is scored by the Redis server clock (TIME), never the probers' clocks, so
// probers on hosts with skewed clocks agree on who is alive. The set expires with its
// last member so a stopped cluster leaves nothing behind.
const HEARTBEAT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
`;

const MEMBERS_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
`;

/** How many MGETs go out in one pipeline (one round trip). */
const MGETS_PER_ROUND_TRIP = 10;

/** Turns a driver error into the one error type; the only place this adapter does so. */
function storeError(op: string, err: unknown): FlotillaError {
  return new FlotillaError(
    'dependency_unavailable',
    `Redis health store: ${op} failed: ${errorText(err)}`,
    {
      retryable: true,
      cause: err,
    },
  );
}

/**
 * The health store over Redis, for a cluster of probers and coordinators. One connection for
 * commands (auto-pipelined, so concurrent probe writes share round trips) and, once somebody
 * subscribes, a second one in subscriber mode.
 */
export function createRedisHealthStore(opts: RedisHealthStoreOptions): HealthStore {
  const keys = healthKeys(opts.keyPrefix ?? 'flotilla:');
  const batchSize = opts.batchSize ?? 1000;
  let log: HealthLogger | undefined = opts.logger;
  const logger = () => {
    log ??= defaultHealthLogger('redis-health-store');
    return log;
  };

  const clientOptions: RedisOptions = {
    // Reconnection is ours (redis-reconnect.ts): ioredis's own backoff grows to 2 s, so after
    // Redis returned a tick waited up to that long (issue 15: classification current 3 s after
    // Redis returned, against two 500 ms ticks). A command while the connection is down tries
    // to connect at once and fails at once when Redis is still away (no offline queueing).
    ...MANAGED_RECONNECT,
    maxRetriesPerRequest: 1,
    commandTimeout: opts.commandTimeoutMs ?? 5000,
    connectionName: 'flotilla-health',
  };
  const reconnect = { maxDelayMs: opts.reconnectMaxDelayMs ?? 500 };
  const connectWaitMs = opts.connectWaitMs ?? 1000;
  const redis = new Redis(opts.url, { ...clientOptions, enableAutoPipelining: true });
  const commands: Reconnector = keepConnected(redis, reconnect);
  let subscriber: Reconnector | undefined;

  // ioredis emits 'error' on every failed reconnect; log a transition once, not each retry.
  // Every client has this listener: without one ioredis prints a stack trace per retry.
  const watch = (client: Redis, role: string) => {
    let down = false;
    client.on('error', (err: unknown) => {
      if (down) return;
      down = true;
      logger().warn({ err: errorText(err), role }, 'Redis health store unreachable; retrying');
    });
    client.on('ready', () => {
      if (!down) return;
      down = false;
      logger().info({ role }, 'Redis health store reachable again');
    });
  };
  watch(redis, 'commands');

  let sub: Redis | undefined;
  let subscribed: Promise<void> | undefined;
  const listeners = new Set<(record: HealthRecord) => void>();
  let closed = false;

  function deliver(message: string): void {
    const record = decodeHealthRecord(message);
    if (!record) {
      logger().warn({ message: message.slice(0, 200) }, 'ignored a malformed health change');
      return;
    }
    for (const l of [...listeners]) {
      try {
        // Each listener gets its own copy, as from the memory store.
        l({ ...record });
      } catch (err) {
        logger().error(
          { err: errorText(err), routeId: record.routeId },
          'health change listener threw',
        );
      }
    }
  }

  function ensureSubscribed(): Promise<void> {
    if (subscribed) return subscribed;
    const s = new Redis(opts.url, { ...clientOptions, connectionName: 'flotilla-health-sub' });
    watch(s, 'subscriber');
    // Re-subscribes (ioredis's autoResubscribe) within the background delay of Redis's return.
    subscriber = keepConnected(s, reconnect);
    s.on('message', (channel: string, message: string) => {
      if (channel === keys.channel) deliver(message);
    });
    sub = s;
    subscribed = s.subscribe(keys.channel).then(
      () => undefined,
      (err: unknown) => {
        subscribed = undefined;
        sub = undefined;
        subscriber?.stop();
        subscriber = undefined;
        s.disconnect();
        throw storeError('subscribe', err);
      },
    );
    return subscribed;
  }

  async function attempt<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw storeError(op, err);
    }
  }

  function run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    // Connected: send now (same tick, so concurrent commands share an auto-pipeline).
    if (redis.status === 'ready') return attempt(op, fn);
    return commands.whenReady(connectWaitMs).then((ready) => {
      if (!ready) throw storeError(op, new Error(`Redis not connected (${redis.status})`));
      return attempt(op, fn);
    });
  }

  return {
    write(record, ttlS) {
      const px = Math.max(1, Math.round(ttlS * 1000));
      return run('write', async () => {
        await redis.set(keys.route(record.routeId), encodeHealthRecord(record), 'PX', px);
      });
    },

    readMany(routeIds) {
      return run('readMany', async () => {
        const out = new Map<string, HealthRecord>();
        const step = batchSize * MGETS_PER_ROUND_TRIP;
        for (let start = 0; start < routeIds.length; start += step) {
          const end = Math.min(start + step, routeIds.length);
          const pipeline = redis.pipeline();
          for (let b = start; b < end; b += batchSize) {
            const batch: string[] = [];
            for (let i = b; i < Math.min(b + batchSize, end); i++) {
              batch.push(keys.route(routeIds[i] as string));
            }
            pipeline.mget(batch);
          }
          const replies = await pipeline.exec();
          if (!replies) throw new Error('pipeline discarded');
          let i = start;
          for (const [err, values] of replies) {
            if (err) throw err;
            for (const raw of values as (string | null)[]) {
              const id = routeIds[i++] as string;
              if (raw === null) continue;
              const record = decodeHealthRecord(raw);
              if (record) out.set(id, record);
            }
          }
        }
        return out;
      });
    },

    publishChange(record) {
      return run('publishChange', async () => {
        await redis.publish(keys.channel, encodeHealthRecord(record));
      });
    },

    async subscribe(listener) {
      const entry = (r: HealthRecord) => listener(r);
      listeners.add(entry);
      try {
        await ensureSubscribed();
      } catch (err) {
        listeners.delete(entry);
        throw err;
      }
      // The channel subscription stays until close(): unsubscribing only drops the listener,
      // which avoids racing a SUBSCRIBE against an UNSUBSCRIBE from another caller.
      return async () => {
        listeners.delete(entry);
      };
    },

    heartbeat(proberId, ttlS) {
      const px = Math.max(1, Math.round(ttlS * 1000));
      return run('heartbeat', async () => {
        await redis.eval(HEARTBEAT_LUA, 1, keys.probers, proberId, px);
      });
    },

    members() {
      return run('members', async () => {
        const ids = (await redis.eval(MEMBERS_LUA, 1, keys.probers)) as string[];
        return [...ids].sort();
      });
    },

    leave(proberId) {
      return run('leave', async () => {
        await redis.zrem(keys.probers, proberId);
      });
    },

    async ping() {
      if (closed) return false;
      // Down: one connection attempt (refused at once while Redis is away) instead of a PING
      // queued for a reconnect, which during an outage would wait for the command timeout.
      if (redis.status !== 'ready' && !(await commands.whenReady(opts.pingTimeoutMs ?? 1000)))
        return false;
      let timer: NodeJS.Timeout | undefined;
      try {
        const timeout = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), opts.pingTimeoutMs ?? 1000);
        });
        // A late PING reply or failure after the timeout has nobody to tell: ignore it.
        const reply = redis.ping().catch(() => 'failed');
        return (await Promise.race([reply, timeout])) === 'PONG';
      } finally {
        clearTimeout(timer);
      }
    },

    async close() {
      if (closed) return;
      closed = true;
      commands.stop();
      subscriber?.stop();
      listeners.clear();
      const quit = async (c: Redis) => {
        // QUIT flushes pending replies; a dead connection would never answer it.
        await Promise.race([c.quit(), new Promise((r) => setTimeout(r, 1000).unref())]).catch(
          () => {},
        );
        c.disconnect();
      };
      await Promise.all([quit(redis), sub ? quit(sub) : Promise.resolve()]);
    },
  };
}
