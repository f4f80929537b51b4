import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { HEALTH_DEFAULTS, type HealthRecord } from '../domain/health.ts';
import { DEFAULT_HEALTH_CHECK, type HealthCheckSpec } from '../domain/session.ts';
import { defaultHealthLogger, errorText, type HealthLogger } from './health-log.ts';
import type { HealthStore } from './health-store.ts';
import { rendezvousOwner } from './rendezvous.ts';

/** One route to readiness-check: its replica's base URL and that replica's health spec. */
export interface ProbeTarget {
  routeId: string;
  replicaId: string;
  /** Base URL of the replica, e.g. `http://127.0.0.1:41234`; `health.path` is appended. */
  url: string;
  health: HealthCheckSpec;
}

export interface ProberOptions {
  store: HealthStore;
  /** Unique per prober process (e.g. `<host>:<pid>:<random>`); its membership identity. */
  proberId: string;
  /**
   * The routes that should be probed now, across all probers (each prober keeps only its share).
   * Called on every scheduling tick (at most a few times a second): return a cached array.
   */
  targets: () => ProbeTarget[];
  /** ROUTE_HEALTH_TTL_SEC: lifetime of each written result. Default 120. */
  ttlS?: number;
  /** Most probes in flight at once. Default 64. */
  concurrency?: number;
  /**
   * Lifetime of this prober's membership after each heartbeat; a prober that dies loses its
   * share this long after its last heartbeat. Default: 2 × the smallest probe interval among
   * the current targets, at least 1 s (10 s with no targets). Heartbeats go out every TTL/4.
   */
  membershipTtlS?: number;
  /**
   * Wall clock for `checked_at` and for judging a previous prober's record, epoch ms. Default
   * `Date.now`. Pass the health store's clock in tests, so no test depends on wall time.
   */
  now?: () => number;
  /**
   * Monotonic ms for scheduling (due times, the join delay, log throttling). Default
   * `performance.now`. A probe's own timeout and latency always use the real one: they
   * measure a real request.
   */
  monotonic?: () => number;
  /** Timers for the scheduling loop. Default the global `setTimeout` / `clearTimeout`. */
  timers?: {
    setTimeout(fn: () => void, ms: number): unknown;
    clearTimeout(id: unknown): void;
  };
  logger?: HealthLogger;
}

export interface ProberStats {
  proberId: string;
  running: boolean;
  /** Live members as last read from the store (this prober included once it has joined). */
  members: string[];
  /** Routes this prober currently owns. */
  owned: number;
  inFlight: number;
  probes: number;
  storeErrors: number;
  /** Epoch ms of the last successful heartbeat, or null. */
  lastHeartbeatAt: number | null;
}

export interface Prober {
  /** Starts heartbeating and probing; idempotent. */
  start(): void;
  /**
   * Stops scheduling, waits for in-flight probes (each bounded by its timeout), leaves the
   * membership so the others take over at once, and closes connections. It can start again.
   */
  stop(): Promise<void>;
  /** One full pass for tests: heartbeat, read members, probe every owned target now, wait. */
  probeOnce(): Promise<void>;
  stats(): ProberStats;
}

interface RouteState {
  target: ProbeTarget;
  /** Monotonic ms at which the next probe is due. */
  nextDueAt: number;
  /** False until the previous record has been read (counters and cadence continue from it). */
  seeded: boolean;
  queued: boolean;
  inFlight: boolean;
  /** Set when the route left this prober's share or the target list: an in-flight result is dropped. */
  dropped: boolean;
  successes: number;
  failures: number;
  /** `ready` of the last change this prober published for the route; undefined before the first. */
  publishedReady: boolean | undefined;
}

const BODY_LIMIT = 64 * 1024;
const LOG_EVERY_MS = 30_000;

/**
 * The readiness prober (the app-proxy worker's role in the reference system). Each owned target
 * is probed every `health.interval_s` with a `health.timeout_s` budget; 2xx is ready. Every result
 * is written with the TTL; a change of `ready` (or this prober's first result for a route) is
 * also published at once. Several probers split the targets by rendezvous hashing over the live
 * members, so each route has exactly one prober while membership is stable. Nothing escapes the
 * loop: store and network errors are logged (throttled) and the next tick carries on.
 */
export function createProber(opts: ProberOptions): Prober {
  const { store, proberId } = opts;
  const ttlS = opts.ttlS ?? HEALTH_DEFAULTS.ROUTE_HEALTH_TTL_SEC;
  const concurrency = Math.max(1, opts.concurrency ?? 64);
  const now = opts.now ?? Date.now;
  const log = opts.logger ?? defaultHealthLogger('health-prober');
  const mono = opts.monotonic ?? (() => performance.now());
  const timers = opts.timers ?? {
    setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms),
    clearTimeout: (id: unknown) => clearTimeout(id as NodeJS.Timeout),
  };

  const states = new Map<string, RouteState>();
  const queue: RouteState[] = [];
  const inFlight = new Set<Promise<void>>();
  let running = false;
  let agent: Agent | undefined;
  let tickTimer: unknown;
  let memberTimer: unknown;
  let memberRun: Promise<void> | undefined;

  // Membership as last read. `joinedAt` (monotonic) is when this prober may start owning
  // routes: when it joins a running cluster it waits one refresh period first, so the members
  // already there notice it and stop probing its share before it starts.
  let members: string[] = [];
  let joinedAt: number | undefined;
  let lastHeartbeatAt: number | null = null;
  let ownerCache = new Map<string, boolean>();
  let ownerCacheKey = '';
  let lastTargets: ProbeTarget[] = [];

  let probes = 0;
  let storeErrors = 0;
  const lastLogged = new Map<string, number>();
  const ttlWarned = new Set<string>();

  function warnThrottled(key: string, obj: object, msg: string): void {
    const t = mono();
    const last = lastLogged.get(key);
    if (last !== undefined && t - last < LOG_EVERY_MS) return;
    lastLogged.set(key, t);
    log.warn({ proberId, ...obj }, msg);
  }

  function getAgent(): Agent {
    // One keep-alive connection per replica is enough for one probe per interval.
    agent ??= new Agent({ connections: 2, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 });
    return agent;
  }

  function smallestIntervalS(): number | undefined {
    let min: number | undefined;
    for (const t of lastTargets) {
      const i = t.health.interval_s;
      if (i > 0 && (min === undefined || i < min)) min = i;
    }
    return min;
  }

  function membershipTtlS(): number {
    if (opts.membershipTtlS !== undefined) return opts.membershipTtlS;
    const min = smallestIntervalS();
    return min === undefined ? 2 * DEFAULT_HEALTH_CHECK.interval_s : Math.max(1, 2 * min);
  }

  /** Heartbeats and re-reads the members. Never throws. */
  async function refreshMembership(): Promise<void> {
    const ttl = membershipTtlS();
    try {
      await store.heartbeat(proberId, ttl);
      lastHeartbeatAt = now();
    } catch (err) {
      storeErrors++;
      warnThrottled('heartbeat', { err: errorText(err) }, 'prober heartbeat failed');
    }
    let read: string[] | undefined;
    try {
      read = await store.members();
    } catch (err) {
      storeErrors++;
      warnThrottled('members', { err: errorText(err) }, 'reading prober members failed');
    }
    if (read) {
      if (joinedAt === undefined && read.includes(proberId)) {
        const others = read.some((m) => m !== proberId);
        joinedAt = others ? mono() + (ttl * 1000) / 4 : mono();
      }
      members = read;
    }
  }

  /**
   * Members used for ownership. Once joined, this prober counts itself in even when the store
   * is unreachable (its own heartbeat failing must not make it stop probing), and the last
   * member list that was read stays in force until a new one arrives.
   */
  function ownsRoute(routeId: string, t: number): boolean {
    if (joinedAt === undefined || t < joinedAt) return false;
    const effective = members.includes(proberId) ? members : [...members, proberId].sort();
    const key = effective.join('\n');
    if (key !== ownerCacheKey) {
      ownerCacheKey = key;
      ownerCache = new Map();
    }
    let owned = ownerCache.get(routeId);
    if (owned === undefined) {
      owned = rendezvousOwner(routeId, effective) === proberId;
      ownerCache.set(routeId, owned);
    }
    return owned;
  }

  function readTargets(): ProbeTarget[] {
    try {
      lastTargets = opts.targets();
    } catch (err) {
      warnThrottled('targets', { err: errorText(err) }, 'listing probe targets failed');
    }
    return lastTargets;
  }

  /** Brings `states` in line with the owned targets; returns the states that are new. */
  function syncStates(t: number): RouteState[] {
    const fresh: RouteState[] = [];
    const seen = new Set<string>();
    for (const target of readTargets()) {
      if (seen.has(target.routeId)) {
        // Two replicas under one route id would reset each other's state every tick.
        warnThrottled('duplicate', { routeId: target.routeId }, 'duplicate probe target ignored');
        continue;
      }
      if (!ownsRoute(target.routeId, t)) continue;
      seen.add(target.routeId);
      let st = states.get(target.routeId);
      if (st && (st.target.replicaId !== target.replicaId || st.target.url !== target.url)) {
        // Same route, different replica: its history does not carry over.
        st.dropped = true;
        st = undefined;
      }
      if (!st) {
        st = {
          target,
          nextDueAt: t,
          seeded: false,
          queued: false,
          inFlight: false,
          dropped: false,
          successes: 0,
          failures: 0,
          publishedReady: undefined,
        };
        states.set(target.routeId, st);
        fresh.push(st);
        warnIfTtlTooShort(target);
      } else {
        st.target = target;
      }
    }
    for (const [id, st] of states) {
      if (!seen.has(id)) {
        st.dropped = true;
        states.delete(id);
      }
    }
    return fresh;
  }

  function warnIfTtlTooShort(target: ProbeTarget): void {
    const h = target.health;
    if (h.interval_s + h.timeout_s < ttlS) return;
    const key = `${h.interval_s}/${h.timeout_s}`;
    if (ttlWarned.has(key)) return;
    ttlWarned.add(key);
    log.warn(
      { proberId, interval_s: h.interval_s, timeout_s: h.timeout_s, ttl_s: ttlS },
      'ROUTE_HEALTH_TTL_SEC is not longer than probe interval + timeout: routes will flap to DEGRADED',
    );
  }

  /**
   * Continues a route's counters and cadence from the record its previous prober wrote, so a
   * handover neither resets consecutive counts nor probes early. A record older than three
   * intervals is history, not a streak: start afresh.
   */
  async function seed(fresh: RouteState[]): Promise<void> {
    let previous = new Map<string, HealthRecord>();
    try {
      previous = await store.readMany(fresh.map((s) => s.target.routeId));
    } catch (err) {
      storeErrors++;
      warnThrottled('seed', { err: errorText(err) }, 'reading previous health records failed');
    }
    const wall = now();
    const t = mono();
    for (const st of fresh) {
      const rec = previous.get(st.target.routeId);
      const intervalMs = st.target.health.interval_s * 1000;
      if (rec && wall - rec.checked_at <= 3 * intervalMs && wall >= rec.checked_at) {
        st.successes = rec.consecutive_successes;
        st.failures = rec.consecutive_failures;
        st.nextDueAt = t + Math.max(0, rec.checked_at + intervalMs - wall);
      }
      st.seeded = true;
    }
  }

  function enqueueDue(t: number): void {
    for (const st of states.values()) {
      if (st.seeded && !st.queued && !st.inFlight && st.nextDueAt <= t) {
        st.queued = true;
        queue.push(st);
      }
    }
  }

  function pump(): void {
    while (running && inFlight.size < concurrency && queue.length > 0) {
      const st = queue.shift() as RouteState;
      st.queued = false;
      if (st.dropped || st.inFlight) continue;
      track(probeAndRecord(st));
    }
  }

  function track(p: Promise<void>): void {
    inFlight.add(p);
    void p.finally(() => {
      inFlight.delete(p);
      pump();
    });
  }

  async function probeAndRecord(st: RouteState): Promise<void> {
    st.inFlight = true;
    const target = st.target;
    const startedAt = mono();
    try {
      const result = await probeTarget(getAgent(), target, proberId);
      probes++;
      if (st.dropped) return;
      if (result.ready) {
        st.successes++;
        st.failures = 0;
      } else {
        st.failures++;
        st.successes = 0;
      }
      const record: HealthRecord = {
        routeId: target.routeId,
        ready: result.ready,
        status: result.status,
        latency_ms: Math.round(result.latencyMs * 10) / 10,
        checked_at: now(),
        consecutive_successes: st.successes,
        consecutive_failures: st.failures,
        error: result.error,
      };
      try {
        await store.write(record, ttlS);
      } catch (err) {
        storeErrors++;
        warnThrottled('write', { err: errorText(err) }, 'writing health results failed');
      }
      if (st.publishedReady !== record.ready) {
        try {
          await store.publishChange(record);
          // Only a delivered change counts; a failed publish is retried with the next result.
          st.publishedReady = record.ready;
        } catch (err) {
          storeErrors++;
          warnThrottled('publish', { err: errorText(err) }, 'publishing a health change failed');
        }
      }
    } catch (err) {
      log.error({ proberId, routeId: target.routeId, err: errorText(err) }, 'probe failed');
    } finally {
      st.inFlight = false;
      // Fixed rate from the start of the probe, so detection takes at most one interval.
      st.nextDueAt = startedAt + target.health.interval_s * 1000;
    }
  }

  function tick(): void {
    try {
      const t = mono();
      const fresh = syncStates(t);
      if (fresh.length > 0) {
        seed(fresh)
          .then(() => {
            if (!running) return;
            enqueueDue(mono());
            pump();
          })
          .catch((err: unknown) => {
            log.error({ proberId, err: errorText(err) }, 'prober scheduling failed');
          });
      }
      enqueueDue(t);
      pump();
    } catch (err) {
      log.error({ proberId, err: errorText(err) }, 'prober tick failed');
    }
  }

  function tickPeriodMs(): number {
    const min = smallestIntervalS() ?? DEFAULT_HEALTH_CHECK.interval_s;
    return Math.min(250, Math.max(20, (min * 1000) / 10));
  }

  function scheduleTick(): void {
    if (!running) return;
    tickTimer = timers.setTimeout(() => {
      tick();
      scheduleTick();
    }, tickPeriodMs());
  }

  function scheduleMembership(delayMs: number): void {
    if (!running) return;
    memberTimer = timers.setTimeout(() => {
      memberRun = refreshMembership().then(() => {
        memberRun = undefined;
        if (!running) return;
        tick();
        scheduleMembership((membershipTtlS() * 1000) / 4);
      });
    }, delayMs);
  }

  return {
    start() {
      if (running) return;
      running = true;
      readTargets();
      scheduleMembership(0);
      scheduleTick();
    },

    async stop() {
      if (!running && inFlight.size === 0 && joinedAt === undefined) return;
      running = false;
      timers.clearTimeout(tickTimer);
      timers.clearTimeout(memberTimer);
      queue.length = 0;
      // A heartbeat racing the leave below would re-add this prober after it left.
      if (memberRun) await memberRun;
      await Promise.allSettled([...inFlight]);
      for (const st of states.values()) st.dropped = true;
      states.clear();
      ownerCacheKey = '';
      joinedAt = undefined;
      members = [];
      try {
        await store.leave(proberId);
      } catch (err) {
        warnThrottled('leave', { err: errorText(err) }, 'leaving prober membership failed');
      }
      const a = agent;
      agent = undefined;
      if (a) await a.close().catch(() => a.destroy());
    },

    async probeOnce() {
      await refreshMembership();
      // An explicit pass does not wait out the join delay.
      if (joinedAt !== undefined) joinedAt = Math.min(joinedAt, mono());
      else joinedAt = mono();
      const fresh = syncStates(mono());
      if (fresh.length > 0) await seed(fresh);
      const owned = [...states.values()].filter((s) => !s.inFlight);
      let next = 0;
      const worker = async () => {
        while (next < owned.length) {
          const st = owned[next++] as RouteState;
          await probeAndRecord(st);
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, owned.length) }, worker));
    },

    stats() {
      let owned = 0;
      for (const st of states.values()) if (!st.dropped) owned++;
      return {
        proberId,
        running,
        members: [...members],
        owned,
        inFlight: inFlight.size,
        probes,
        storeErrors,
        lastHeartbeatAt,
      };
    },
  };
}

export interface ProbeResult {
  ready: boolean;
  status: number | null;
  latencyMs: number;
  error: string | null;
}

/**
 * One readiness check: `health.method` (default GET; POST with an empty body) to base URL + path
 * within timeout_s; 2xx is ready. Never throws. The
 * request names its prober in `x-flotilla-prober`, so a replica's access log shows who probes it.
 */
export async function probeTarget(
  agent: Agent,
  target: ProbeTarget,
  proberId = 'flotilla-prober',
): Promise<ProbeResult> {
  const { path, timeout_s } = target.health;
  const method = target.health.method ?? 'GET';
  const url = joinUrl(target.url, path);
  const started = performance.now();
  const deadline = started + timeout_s * 1000;
  let status: number | null = null;
  // One retry for a kept-alive connection the replica closed under us: without it, a replica
  // whose idle timeout races our interval would flap UNHEALTHY for nothing.
  for (let attempt = 0; ; attempt++) {
    const signal = AbortSignal.timeout(Math.max(1, Math.ceil(deadline - performance.now())));
    try {
      const res = await request(url, {
        dispatcher: agent,
        method,
        signal,
        headers: { 'user-agent': 'flotilla-prober', 'x-flotilla-prober': proberId },
        ...(method === 'POST' ? { body: '' } : {}),
      });
      status = res.statusCode;
      await res.body.dump({ limit: BODY_LIMIT, signal });
      const ready = status >= 200 && status < 300;
      return {
        ready,
        status,
        latencyMs: performance.now() - started,
        error: ready ? null : `HTTP ${status} from ${path}`,
      };
    } catch (err) {
      if (attempt === 0 && isStaleSocket(err) && performance.now() < deadline) continue;
      return {
        ready: false,
        status,
        latencyMs: performance.now() - started,
        error: describeProbeError(err, timeout_s),
      };
    }
  }
}

function joinUrl(base: string, path: string): string {
  const b = base.endsWith('/') ? base.slice(0, -1) : base;
  return `${b}${path.startsWith('/') ? path : `/${path}`}`;
}

function errCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.cause?.code === 'string') return e.cause.code;
  return undefined;
}

function isStaleSocket(err: unknown): boolean {
  const code = errCode(err);
  return code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE';
}

/** The reason an operator reads in `flotilla status`: short, cause first. */
export function describeProbeError(err: unknown, timeoutS: number): string {
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError' || errCode(err) === 'UND_ERR_HEADERS_TIMEOUT') {
    return `timeout after ${timeoutS} s`;
  }
  const msg = errorText(err);
  switch (errCode(err)) {
    case 'ECONNREFUSED':
      return `connection refused (${msg})`;
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return `connection reset (${msg})`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `host unreachable (${msg})`;
    case 'ENOTFOUND':
      return `name not resolved (${msg})`;
    default:
      return msg;
  }
}
