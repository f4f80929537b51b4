/**
 * Flotilla's data plane: a node:http server forwarding `/{deployment-or-endpoint}/{rest}` to
 * a replica's `/{rest}` over pooled keep-alive undici connections, with admission control,
 * retries, streaming pass-through, passive outlier detection and draining.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { type Logger, pino } from 'pino';
import type { Registry } from 'prom-client';
import type { Dispatcher } from 'undici';
import {
  type ConnectionTimeouts,
  httpServerTimeouts,
  PROXY_CONNECTION_TIMEOUTS,
} from '../domain/connection-timeouts.ts';
import { type ErrorCode, errorBody as errorShape, FlotillaError } from '../domain/errors.ts';
import { hostForUrl } from '../domain/host.ts';
import { isPathAllowed, type RoutingTable } from '../domain/routing.ts';
import { ActivationGate, type HeldRequest } from './activation.ts';
import { type AdmissionLevel, LEVEL_VALUE, type Waiter, type WorkerShare } from './admission.ts';
import {
  buildResponseHeaders,
  type HopCache,
  type RequestHeaderScan,
  type ResponseHeaderScan,
  scanRequestHeaders,
} from './forward-headers.ts';
import { type OutlierConfig, OutlierDetector } from './outlier-detector.ts';
import type { ProxyEvent, ProxyEventListener } from './proxy-events.ts';
import { createProxyMetrics } from './proxy-metrics.ts';
import { parseProxyPath } from './request-path.ts';
import {
  type EndpointState,
  type ProxiedDeployment,
  RoutingState,
  type Upstream,
} from './routing-state.ts';
import type { RoutingTableSource } from './routing-table-source.ts';

/** Options of `createProxy`. */
export interface ProxyOptions {
  /** Where the routing table comes from; the proxy follows every table it publishes. */
  source: RoutingTableSource;
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Listen port; default 0 (any free port). */
  port?: number;
  logger?: Logger;
  /** Uniform [0, 1): graduated rejection and power of two choices. Seed it in tests. */
  random?: () => number;
  /** Passive outlier detection settings; defaults in OUTLIER_DEFAULTS. */
  outlier?: Partial<OutlierConfig>;
  /**
   * Limits on client connections; defaults in PROXY_CONNECTION_TIMEOUTS. There is no socket
   * idle limit: while a client waits for its answer the connection is silent for as long as
   * the deployment's `request_timeout_s` allows, and that deadline bounds it.
   */
  timeouts?: Partial<ConnectionTimeouts>;
  /**
   * Scale to zero: how a request for a deployment at zero asks for an activation (the
   * runtime in process, the coordinator through Redis for a separate proxy), and how long it
   * waits for a replica (default 60 s, never past its request budget). Without it such a
   * request answers 503 `no_healthy_replicas` at once.
   */
  activation?: {
    request: (deploymentId: string) => unknown;
    timeoutMs?: number;
    resendMs?: number;
  };
  /** This process's part of every deployment's admission limits (several proxy workers). */
  workerShare?: WorkerShare;
}

/** Load status of one deployment as seen by this proxy. */
export interface DeploymentLoadStatus {
  level: AdmissionLevel;
  /** Requests holding an admission slot (in flight to replicas). */
  inflight: number;
  queued: number;
  /** Concurrent slots: max_concurrent_requests × servable, non-ejected replicas. */
  capacity: number;
}

/**
 * The proxy's load as its `/health` reports it (the graceful-degradation "health stats"):
 * the worst deployment level, totals over every deployment, and the busiest deployments.
 */
export interface ProxyHealthStats {
  /** The most loaded deployment's level; `healthy` with no deployment. */
  level: AdmissionLevel;
  inflight: number;
  queued: number;
  capacity: number;
  /** Up to 20 deployments with requests in flight or queued, busiest first. */
  busiest: Array<DeploymentLoadStatus & { deployment: string }>;
  /** False once close() began: no new request is taken. */
  serving: boolean;
}

/** A running proxy. */
export interface FlotillaProxy {
  port: number;
  /** Base URL, e.g. `http://127.0.0.1:4100`. */
  url: string;
  /**
   * Stops accepting, answers queued requests with 503, lets in-flight ones finish (up to 5 s)
   * and closes every upstream connection. Does not close the table source (its owner does).
   */
  close(): Promise<void>;
  /** Requests in flight to a route, including after it left the table; the coordinator's drain waits for 0. */
  inflight(routeId: string): number;
  /** Load status of a deployment (by name or id); zeros and `healthy` for one not in the table. */
  status(deployment: string): DeploymentLoadStatus;
  /** Load over every deployment, for /health. */
  stats(): ProxyHealthStats;
  /**
   * When each deployment (by id) was last in use at this proxy, epoch ms: its latest request,
   * or now while it has requests in flight, queued or held. The scale-to-zero idle signal.
   */
  lastRequests(): Map<string, number>;
  /** Requests held for an activation, by deployment id (scale to zero). */
  held(deploymentId: string): number;
  /** Outlier ejection and return events; returns the unsubscribe function. */
  onEvent(listener: (e: ProxyEvent) => void): () => void;
  /** `flotilla_proxy_*` metrics, in a registry of the proxy's own. */
  metrics: Registry;
}

const RETRY_AFTER_S = '1';
const MAX_BUFFERED_BODY = 1024 * 1024;
const CLOSE_GRACE_MS = 5_000;
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
/** Errors where the request cannot have reached the replica. */
const CONNECT_ERRORS = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
]);
/** Errors after the request may have been sent: retried for idempotent methods only. */
const SOCKET_ERRORS = new Set([
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
]);

function errorCodeOf(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  if (e && typeof e.code === 'string') return e.code;
  if (e?.cause && typeof e.cause.code === 'string') return e.cause.code;
  return '';
}

/**
 * undici runs header and body timeouts above 1 s on a coarse clock (one tick every ~0.5 s),
 * and re-arms its timer instead of refreshing it whenever the header timeout differs from the
 * body timeout. An attempt whose request budget leaves it within one such tick of the full
 * per-attempt timeout gets the per-attempt timeout for both: no new timer per request, and
 * the budget is kept as precisely as undici's clock would keep it anyway.
 */
const TIMEOUT_SLACK_MS = 500;

/** Filled by each response's header pass and read at once (synchronous, so one object serves all). */
const responseScan: ResponseHeaderScan = { fixedLength: false, contentLength: -1 };

/** Per client connection: this hop's forwarding headers (forward-headers.ts). */
const HOP = Symbol('flotilla.hop');
type HopSocket = Socket & { [HOP]?: HopCache };

/** The routing config's per-attempt timeout, 60 s when it is missing or not positive. */
function attemptTimeoutMs(dep: ProxiedDeployment): number {
  const s = dep.routing.request_timeout_s;
  return typeof s === 'number' && s > 0 ? s * 1000 : 60_000;
}

/** Where the proxy's own errors point: the request path, or the request as a whole. */
const DETAIL_PATH: Partial<Record<ErrorCode, string>> = { not_found: '(url)', validation: '(url)' };

/** The API's error shape, `{"error": {"code", "message", "details"}}`, with one detail. */
function errorBody(code: ErrorCode, message: string): string {
  const path = DETAIL_PATH[code] ?? '(request)';
  return JSON.stringify(
    errorShape(new FlotillaError(code, message, { details: [{ path, message }] })),
  );
}

function sendError(
  res: ServerResponse,
  status: number,
  code: ErrorCode,
  message: string,
  extra?: string[],
): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = errorBody(code, message);
  const headers = [
    'content-type',
    'application/json; charset=utf-8',
    'content-length',
    String(Buffer.byteLength(body)),
    'cache-control',
    'no-store',
  ];
  if (status === 503) headers.push('retry-after', RETRY_AFTER_S);
  if (extra) headers.push(...extra);
  res.writeHead(status, headers);
  res.end(body);
}

/** Starts a proxy listening on `host:port` and following `source`. */
export async function createProxy(opts: ProxyOptions): Promise<FlotillaProxy> {
  const log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'proxy' });
  const random = opts.random ?? Math.random;
  // Several workers: each response says which one served it (README "Proxy workers").
  const workerTag =
    opts.workerShare && opts.workerShare.count > 1 ? String(opts.workerShare.index) : undefined;
  const listeners = new Set<ProxyEventListener>();
  const emit = (e: ProxyEvent) => {
    for (const l of listeners) {
      try {
        l(e);
      } catch (err) {
        log.warn({ err }, 'proxy event listener failed');
      }
    }
  };

  let state: RoutingState;
  const metrics = createProxyMetrics(() =>
    [...state.allDeployments()].map((d) => ({
      deployment: d.name,
      inflight: d.admission.inflight,
      queued: d.admission.queued,
      capacity: d.admission.capacity,
      load: d.admission.load(),
      level: d.admission.level(),
    })),
  );
  const outliers: OutlierDetector<Upstream> = new OutlierDetector<Upstream>(opts.outlier, {
    peers: (u) => u.deployment.targets,
    ejected: (u, reason, ejectionMs, consecutiveFailures) => {
      const d = u.deployment;
      d.metrics.ejected();
      log.warn(
        { deployment: d.name, routeId: u.routeId, replicaId: u.replicaId, reason, ejectionMs },
        'replica ejected by outlier detection',
      );
      state.refresh(d);
      emit({
        type: 'outlier.ejected',
        deployment: d.name,
        deploymentId: d.id,
        routeId: u.routeId,
        replicaId: u.replicaId,
        reason,
        consecutiveFailures,
        ejectionMs,
        at: Date.now(),
      });
    },
    returned: (u) => {
      const d = u.deployment;
      log.info({ deployment: d.name, routeId: u.routeId }, 'ejected replica back in rotation');
      if (!u.retired) state.refresh(d);
      emit({
        type: 'outlier.returned',
        deployment: d.name,
        deploymentId: d.id,
        routeId: u.routeId,
        replicaId: u.replicaId,
        at: Date.now(),
      });
    },
  });
  state = new RoutingState({
    random,
    metrics,
    outliers,
    warn: (msg, fields) => log.warn(fields ?? {}, msg),
    share: opts.workerShare,
  });

  const gate = opts.activation
    ? new ActivationGate({
        request: opts.activation.request,
        ...(opts.activation.timeoutMs !== undefined
          ? { timeoutMs: opts.activation.timeoutMs }
          : {}),
        ...(opts.activation.resendMs !== undefined ? { resendMs: opts.activation.resendMs } : {}),
        warn: (obj, msg) => log.warn(obj, msg),
      })
    : null;
  /** Latest request arrival per deployment id (epoch ms): the scale-to-zero idle signal. */
  const lastArrival = new Map<string, number>();

  const applyTable = (t: RoutingTable) => {
    try {
      const before = state.version;
      state.apply(t);
      if (state.version !== before) log.debug({ version: t.version }, 'routing table applied');
    } catch (err) {
      log.error({ err, version: t.version }, 'routing table rejected');
    }
    // Requests held for an activation go on once their deployment can serve (or is gone).
    if (gate) {
      for (const id of gate.deployments()) {
        const d = state.deployment(id);
        if (!d || d.id !== id || d.availableCount() > 0 || !d.activation) gate.release(id);
      }
    }
  };
  applyTable(opts.source.current());
  const unsubscribe = opts.source.subscribe(applyTable);

  let closing = false;
  let active = 0;
  let idleWaiter: (() => void) | undefined;

  // One 'close' listener function for every response, finding its exchange through a symbol,
  // instead of a closure per request.
  const EXCHANGE = Symbol('flotilla.exchange');
  type ExchangeResponse = ServerResponse & { [EXCHANGE]?: Exchange | undefined };
  function onResponseClose(this: ServerResponse): void {
    (this as ExchangeResponse)[EXCHANGE]?.clientClosed();
  }

  /** One client request through the proxy, from arrival to the end of its response. */
  class Exchange implements Waiter {
    readonly start = performance.now();
    readonly deadline: number;
    priority: number;
    timer: NodeJS.Timeout | undefined = undefined;
    dep: ProxiedDeployment;
    /** Deployments of the endpoint this request gave up on (evicted from their queue). */
    skipped: ProxiedDeployment[] | null = null;
    body: Buffer | IncomingMessage | null = null;
    replayable = true;
    tried: Upstream[] | null = null;
    attempt: Attempt | null = null;
    retriesLeft: number;
    queued = false;
    holdsSlot = false;
    clientGone = false;
    finished = false;

    constructor(
      readonly req: IncomingMessage,
      readonly res: ServerResponse,
      dep: ProxiedDeployment,
      readonly endpoint: EndpointState | null,
      readonly path: string,
      readonly scan: RequestHeaderScan,
    ) {
      this.dep = dep;
      this.priority = scan.priority;
      this.retriesLeft = Math.max(0, Math.floor(dep.routing.retries) || 0);
      this.deadline = this.start + dep.admissionConfig.request_timeout_s * 1000;
      active++;
      (res as ExchangeResponse)[EXCHANGE] = this;
      res.on('close', onResponseClose);
    }

    /** The client connection closed (normally after the response, or early: an abort). */
    clientClosed(): void {
      if (this.res.writableFinished) return;
      this.clientGone = true;
      if (this.queued && this.dep.admission.cancel(this)) {
        this.queued = false;
        this.done(499);
        return;
      }
      // In flight: the abort ends the attempt, which ends the exchange. Otherwise (reading
      // the body, or between admission and dispatch) end it here.
      if (this.attempt) this.attempt.abort();
      else this.done(499);
    }

    /** `now`: performance.now() when the caller has just read it (the arrival). */
    admit(now?: number): void {
      const decision = this.dep.admission.admit(this);
      if (decision.kind === 'run') {
        this.holdsSlot = true;
        this.begin(now);
      } else if (decision.kind === 'queued') {
        this.queued = true;
        const cfg = this.dep.admissionConfig;
        this.dep.admission.armTimer(
          this,
          Math.min(cfg.queue_timeout_s * 1000, this.deadline - performance.now()),
        );
      } else {
        const msg =
          decision.reason === 'queue_full'
            ? `deployment ${this.dep.name} is overloaded: its queue is full`
            : `deployment ${this.dep.name} is overloaded`;
        this.fail(503, 'overloaded', msg, ['x-flotilla-load', decision.load.toFixed(3)]);
      }
    }

    // Waiter: called by the admission queue.
    grant(): void {
      this.queued = false;
      this.holdsSlot = true;
      if (this.clientGone) {
        this.done(499);
        return;
      }
      this.begin();
    }

    expire(): void {
      this.queued = false;
      if (performance.now() >= this.deadline - 1) {
        // The whole request budget went on waiting: a timeout, not a refusal.
        this.fail(
          504,
          'upstream_timeout',
          `no replica of ${this.dep.name} free within the request budget`,
        );
        return;
      }
      this.fail(
        503,
        'overloaded',
        `deployment ${this.dep.name} is overloaded: queue wait timed out`,
      );
    }

    evict(): void {
      this.queued = false;
      if (this.clientGone) {
        this.done(499);
        return;
      }
      if (!closing && this.endpoint) {
        if (this.skipped) this.skipped.push(this.dep);
        else this.skipped = [this.dep];
        const next = this.endpoint.pick(this.skipped);
        if (next) {
          this.dep = next;
          this.retriesLeft = Math.max(0, Math.floor(next.routing.retries) || 0);
          this.admit();
          return;
        }
      }
      this.failNoReplicas();
    }

    failNoReplicas(): void {
      this.dep.metrics.rejected('no_healthy_replicas');
      this.fail(
        503,
        'no_healthy_replicas',
        this.endpoint
          ? `no backend of endpoint ${this.endpoint.name} has a healthy replica`
          : `deployment ${this.dep.name} has no healthy replica`,
      );
    }

    /** Holds a slot: read a small body so it can be replayed on retry, then forward. */
    begin(now?: number): void {
      const { req, scan } = this;
      if (scan.chunked || scan.contentLength > MAX_BUFFERED_BODY) {
        this.body = req;
        this.replayable = false;
        this.forward(now);
        return;
      }
      if (scan.contentLength <= 0) {
        this.forward(now);
        return;
      }
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.once('end', () => {
        this.body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        this.forward();
      });
      req.once('error', () => {
        if (!this.finished) this.done(499);
      });
    }

    forward(now = performance.now()): void {
      if (this.clientGone) {
        this.done(499);
        return;
      }
      const remaining = this.deadline - now;
      if (remaining <= 0) {
        this.dep.metrics.timedOut('upstream');
        this.fail(
          504,
          'upstream_timeout',
          `no response within the request budget of ${this.dep.name}`,
        );
        return;
      }
      const u = this.dep.pick(this.tried);
      if (!u) {
        this.failNoReplicas();
        return;
      }
      if (this.tried) this.tried.push(u);
      else this.tried = [u];
      const perAttemptMs = attemptTimeoutMs(this.dep);
      const attemptMs =
        perAttemptMs > 1_000 && remaining >= perAttemptMs - TIMEOUT_SLACK_MS
          ? perAttemptMs
          : Math.max(1, Math.min(perAttemptMs, remaining));
      const a = new Attempt(this, u, this.dep.failStatic);
      this.attempt = a;
      u.inflight++;
      if (u.adaptive) {
        a.sentAt = performance.now();
        a.sentInflight = u.inflight;
      }
      const opts: Dispatcher.DispatchOptions = {
        path: u.basePath ? u.basePath + this.path : this.path,
        method: this.req.method as Dispatcher.HttpMethod,
        headers: this.scan.headers,
        body: this.body,
        headersTimeout: Math.ceil(attemptMs),
        bodyTimeout: Math.ceil(perAttemptMs),
      };
      try {
        u.dispatcher().dispatch(opts, a);
      } catch (err) {
        a.onError(err as Error);
      }
    }

    /** Whether a failed attempt (nothing sent to the client yet) may be retried elsewhere. */
    canRetry(): boolean {
      return (
        this.retriesLeft > 0 &&
        this.replayable &&
        !this.clientGone &&
        !closing &&
        this.deadline - performance.now() > 0 &&
        this.dep.hasAlternative(this.tried)
      );
    }

    retry(): void {
      this.retriesLeft--;
      this.attempt = null;
      this.dep.metrics.retried();
      this.forward();
    }

    fail(status: number, code: ErrorCode, message: string, extra?: string[]): void {
      if (this.finished) return;
      if (!this.clientGone) sendError(this.res, status, code, message, extra);
      this.done(status);
    }

    done(status: number): void {
      if (this.finished) return;
      this.finished = true;
      this.attempt = null;
      this.res.off('close', onResponseClose);
      (this.res as ExchangeResponse)[EXCHANGE] = undefined;
      if (this.holdsSlot) {
        this.holdsSlot = false;
        this.dep.admission.release();
      }
      this.dep.metrics.finished(status, (performance.now() - this.start) / 1000);
      active--;
      if (active === 0 && idleWaiter) idleWaiter();
    }
  }

  /**
   * One try of an exchange against one replica: the undici dispatch handler. Uses undici's
   * raw-header handler interface (onConnect/onHeaders/onData/onComplete/onError), which
   * undici 7 passes through without converting headers to objects.
   */
  class Attempt implements Dispatcher.DispatchHandler {
    private abortFn: ((err?: Error) => void) | undefined;
    private aborted = false;
    /** A 502/503 whose body is being drained before the retry. */
    private discarding = 0;
    private status = 0;
    private settled = false;
    /** Adaptive mode: when the request left for the replica (0: not measured), and the replica's load then. */
    sentAt = 0;
    sentInflight = 0;

    constructor(
      private readonly ex: Exchange,
      private readonly u: Upstream,
      private readonly failStatic: boolean,
    ) {}

    /** Adaptive mode: the first byte came (a latency sample) or the attempt failed (a drop). */
    private measure(ok: boolean): void {
      const u = this.u;
      const limit = u.adaptive;
      const now = performance.now();
      const t = this.sentAt;
      this.sentAt = 0;
      if (!limit) return;
      const changed = ok ? limit.sample(now, now - t, this.sentInflight) : limit.drop();
      if (changed && !u.retired) u.deployment.recomputeCapacity();
    }

    abort(): void {
      this.aborted = true;
      this.abortFn?.(new Error('client disconnected'));
    }

    onConnect(abort: (err?: Error) => void): void {
      this.abortFn = abort;
      if (this.aborted) abort(new Error('client disconnected'));
    }

    onHeaders(
      statusCode: number,
      rawHeaders: Buffer[],
      resume: () => void,
      statusText: string,
    ): boolean {
      if (statusCode < 200) return true;
      const ex = this.ex;
      this.status = statusCode;
      if ((statusCode === 502 || statusCode === 503) && ex.canRetry()) {
        this.discarding = statusCode;
        return true;
      }
      const res = ex.res;
      if (ex.clientGone || res.destroyed) return true;
      const scan = responseScan;
      const headers = buildResponseHeaders(rawHeaders, this.u.replicaId, this.failStatic, scan);
      if (workerTag !== undefined) headers.push('x-flotilla-worker', workerTag);
      res.writeHead(statusCode, statusText || undefined, headers);
      // Streams (SSE, chunked) get their headers out now; fixed-length bodies carry them
      // with the first chunk (one write instead of two).
      if (!scan.fixedLength) res.flushHeaders();
      else if (scan.contentLength > 0 && ex.req.method !== 'HEAD')
        this.remaining = scan.contentLength;
      this.resume = resume;
      return true;
    }

    private resume: (() => void) | undefined;
    private onDrain: (() => void) | undefined;
    /** Body bytes still to come of a fixed-length response (-1: not fixed-length). */
    private remaining = -1;
    /** The client response was ended with the last body chunk. */
    private ended = false;

    onData(chunk: Buffer): boolean {
      if (this.sentAt !== 0) this.measure(this.status < 500);
      if (this.discarding) return true;
      const res = this.ex.res;
      if (this.ex.clientGone || res.destroyed) return true;
      if (this.remaining > 0) {
        this.remaining -= chunk.length;
        if (this.remaining === 0) {
          // The last chunk of a fixed-length body: headers, body and end in one write.
          this.ended = true;
          res.end(chunk);
          return true;
        }
      }
      if (!res.write(chunk)) {
        this.onDrain ??= () => this.resume?.();
        res.once('drain', this.onDrain);
        return false;
      }
      return true;
    }

    onComplete(): void {
      if (this.settled) return;
      this.settled = true;
      const { ex, u } = this;
      if (this.sentAt !== 0) this.measure(this.status < 500);
      u.release();
      if (this.status >= 500) outliers.failure(u, 'status_5xx');
      else outliers.success(u);
      ex.attempt = null;
      if (this.discarding) {
        if (ex.canRetry()) {
          ex.retry();
          return;
        }
        ex.fail(
          this.discarding,
          'dependency_unavailable',
          `replica ${u.replicaId} answered ${this.discarding} and no other replica could take the retry`,
          ['x-flotilla-replica', u.replicaId],
        );
        return;
      }
      if (!ex.clientGone && !this.ended) ex.res.end();
      ex.done(this.status);
    }

    onError(err: Error): void {
      if (this.settled) return;
      this.settled = true;
      const { ex, u } = this;
      if (this.sentAt !== 0) {
        if (this.aborted || ex.clientGone) this.sentAt = 0;
        else this.measure(false);
      }
      u.release();
      ex.attempt = null;
      if (this.aborted || ex.clientGone) {
        ex.done(499);
        return;
      }
      const code = errorCodeOf(err);
      const timedOut = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
      const connectFailure = CONNECT_ERRORS.has(code);
      outliers.failure(u, timedOut ? 'timeout' : connectFailure ? 'connect' : 'socket');
      if (ex.res.headersSent) {
        // Bytes already reached the client: all that is left is to cut the stream short.
        ex.res.destroy(err);
        ex.done(this.status || 502);
        return;
      }
      if (timedOut) {
        ex.dep.metrics.timedOut('upstream');
        ex.fail(504, 'upstream_timeout', `replica ${u.replicaId} did not answer in time`, [
          'x-flotilla-replica',
          u.replicaId,
        ]);
        return;
      }
      const retryable =
        connectFailure ||
        (SOCKET_ERRORS.has(code) && IDEMPOTENT.has(ex.req.method ?? '')) ||
        this.discarding !== 0;
      if (retryable && ex.canRetry()) {
        ex.retry();
        return;
      }
      const status = this.discarding || 502;
      ex.fail(
        status,
        'dependency_unavailable',
        `replica ${u.replicaId} failed: ${code || err.message}`,
        ['x-flotilla-replica', u.replicaId],
      );
    }
  }

  const started = Date.now();

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    if (url.length <= 9 && (url === '/health' || url === '/ready' || url === '/metrics')) {
      serveOwn(url, res);
      return;
    }
    if (closing) {
      sendError(res, 503, 'dependency_unavailable', 'proxy is shutting down');
      return;
    }
    const parsed = parseProxyPath(url);
    if (!parsed.ok) {
      if (parsed.reason === 'not_found')
        sendError(res, 404, 'not_found', 'no deployment or endpoint here');
      else if (parsed.reason === 'escape')
        sendError(res, 400, 'validation', 'path climbs above the deployment prefix');
      else sendError(res, 400, 'validation', 'malformed percent-encoding in the path');
      return;
    }
    const target = state.lookup(parsed.name);
    if (!target) {
      sendError(res, 404, 'not_found', `no deployment or endpoint named ${parsed.name}`);
      return;
    }
    let dep: ProxiedDeployment | undefined;
    let endpoint: EndpointState | null = null;
    if (target.kind === 'endpoint') {
      endpoint = target;
      if (target.backends.length === 0) {
        sendError(res, 503, 'no_backends', `endpoint ${target.name} has no backends`);
        return;
      }
      dep = target.pick(null);
      if (!dep) {
        sendError(
          res,
          503,
          'no_healthy_replicas',
          `no backend of endpoint ${target.name} has a healthy replica`,
        );
        return;
      }
    } else {
      dep = target;
      lastArrival.set(dep.id, Date.now());
      if (dep.availableCount() === 0) {
        if (gate && dep.activation && isPathAllowed(dep.routing, parsed.path)) {
          holdForActivation(req, res, dep);
          return;
        }
        dep.metrics.rejected('no_healthy_replicas');
        sendError(res, 503, 'no_healthy_replicas', `deployment ${dep.name} has no healthy replica`);
        return;
      }
    }
    if (!isPathAllowed(dep.routing, parsed.path)) {
      sendError(res, 404, 'not_found', `deployment ${dep.name} does not serve this path`);
      return;
    }
    if (endpoint) lastArrival.set(dep.id, Date.now());
    const socket = req.socket as HopSocket;
    const scan = scanRequestHeaders(req.rawHeaders, socket.remoteAddress, 'http', socket[HOP]);
    const ex = new Exchange(req, res, dep, endpoint, parsed.path, scan);
    // Admitted at once: the arrival's clock reading serves the first attempt's budget too.
    ex.admit(ex.start);
  }

  /** Holds a request for a deployment at zero until a replica can take it (activation.ts). */
  function holdForActivation(req: IncomingMessage, res: ServerResponse, dep: ProxiedDeployment) {
    const g = gate as ActivationGate;
    const cfg = dep.admissionConfig;
    const onClose = () => {
      if (!res.writableFinished) g.cancel(dep.id, held);
    };
    const held: HeldRequest = {
      resume() {
        res.off('close', onClose);
        if (res.destroyed) return;
        // Routed afresh: the table may have renamed or removed the deployment meanwhile.
        handle(req, res);
      },
      reject(reason) {
        res.off('close', onClose);
        if (reason === 'full') {
          dep.metrics.rejected('queue_full');
          sendError(
            res,
            503,
            'overloaded',
            `deployment ${dep.name} is activating and its queue is full`,
          );
          return;
        }
        if (reason === 'closing') {
          sendError(res, 503, 'dependency_unavailable', 'proxy is shutting down');
          return;
        }
        dep.metrics.rejected('activation_timeout');
        sendError(
          res,
          503,
          'activation_timeout',
          `deployment ${dep.name} is scaled to zero and no replica became ready in time`,
        );
      },
    };
    res.on('close', onClose);
    g.hold(
      dep.id,
      held,
      cfg.max_queue_size + cfg.max_concurrent_requests,
      cfg.request_timeout_s * 1000,
    );
  }

  function lastRequests(): Map<string, number> {
    const out = new Map(lastArrival);
    const now = Date.now();
    for (const d of state.allDeployments()) {
      if (d.admission.inflight > 0 || d.admission.queued > 0) out.set(d.id, now);
    }
    if (gate) for (const id of gate.deployments()) out.set(id, now);
    return out;
  }

  function stats(): ProxyHealthStats {
    let level: AdmissionLevel = 'healthy';
    let inflight = 0;
    let queued = 0;
    let capacity = 0;
    const busy: Array<DeploymentLoadStatus & { deployment: string }> = [];
    for (const d of state.allDeployments()) {
      const s = d.status();
      inflight += s.inflight;
      queued += s.queued;
      capacity += s.capacity;
      if (LEVEL_VALUE[s.level] > LEVEL_VALUE[level]) level = s.level;
      if (s.inflight > 0 || s.queued > 0) busy.push({ deployment: d.name, ...s });
    }
    busy.sort((a, b) => b.inflight + b.queued - (a.inflight + a.queued));
    return { level, inflight, queued, capacity, busiest: busy.slice(0, 20), serving: !closing };
  }

  function serveOwn(url: string, res: ServerResponse): void {
    if (url === '/metrics') {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          log.error({ err }, 'metrics collection failed');
          sendError(res, 500, 'internal', 'metrics collection failed');
        },
      );
      return;
    }
    const ready = url === '/health' || !closing;
    const body = JSON.stringify(
      url === '/health'
        ? { status: 'ok', uptime_s: Math.round((Date.now() - started) / 1000), load: stats() }
        : { status: ready ? 'ready' : 'closing', table_version: state.version },
    );
    res.writeHead(ready ? 200 : 503, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
    });
    res.end(body);
  }

  const server: Server = createServer(
    { noDelay: true, ...httpServerTimeouts(PROXY_CONNECTION_TIMEOUTS, opts.timeouts) },
    (req, res) => {
      try {
        handle(req, res);
      } catch (err) {
        log.error({ err }, 'proxy request handling failed');
        sendError(res, 500, 'internal', 'proxy error');
      }
    },
  );
  const sockets = new Set<Socket>();
  server.on('connection', (s: HopSocket) => {
    sockets.add(s);
    s[HOP] = { remote: undefined, proto: '', host: '', client: '', element: '' };
    s.once('close', () => sockets.delete(s));
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    unsubscribe();
    await state.close(0);
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  const host = opts.host ?? '127.0.0.1';
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : hostForUrl(host);
  log.info({ port, host }, 'proxy listening');

  let closed: Promise<void> | undefined;
  return {
    port,
    url: `http://${urlHost}:${port}`,
    close() {
      closed ??= (async () => {
        closing = true;
        unsubscribe();
        gate?.close();
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        for (const ds of state.allDeployments()) ds.admission.evictAll();
        if (active > 0) {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, CLOSE_GRACE_MS);
            idleWaiter = () => {
              clearTimeout(t);
              resolve();
            };
          });
        }
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
        await state.close(0);
        await stopped;
        listeners.clear();
      })();
      return closed;
    },
    inflight: (routeId) => state.inflight(routeId),
    status(deployment) {
      const d = state.deployment(deployment);
      return d ? d.status() : { level: 'healthy', inflight: 0, queued: 0, capacity: 0 };
    },
    stats,
    lastRequests,
    held: (deploymentId) => gate?.heldCount(deploymentId) ?? 0,
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    metrics: metrics.registry,
  };
}
