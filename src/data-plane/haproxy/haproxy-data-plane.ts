/**
 * `serve --data-plane haproxy`: Flotilla's routing table served by a managed HAProxy. The
 * table's servers follow through the runtime API without a reload (add, delete, drain,
 * maintenance, weight, address); a change of what the config says beyond servers (a
 * deployment added or removed, its strategy, timeouts, retries or admission settings) writes
 * the config and reloads without dropping connections. It offers the own proxy's interface
 * (FlotillaProxy), so the coordinator's drains and /health read it alike.
 */
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Logger, pino } from 'pino';
import { Gauge, Registry } from 'prom-client';
import { freePort } from '../../backends/free-port.ts';
import { hostForUrl } from '../../domain/host.ts';
import type { RoutingTable } from '../../domain/routing.ts';
import { serialQueue } from '../../domain/serial-queue.ts';
import type { AdmissionLevel } from '../../proxy/admission.ts';
import type {
  DeploymentLoadStatus,
  FlotillaProxy,
  ProxyHealthStats,
} from '../../proxy/proxy-server.ts';
import type { RoutingTableSource } from '../../proxy/routing-table-source.ts';
import {
  type BackendSpec,
  backendsOf,
  haproxyPaths,
  type ListenSpec,
  renderConfig,
  renderMaps,
  structureKey,
} from './config.ts';
import { type HaproxyProcess, startHaproxy } from './haproxy-process.ts';
import { isOkAnswer, parseShowStat, runtimeCommand } from './runtime-api.ts';
import { type AppliedServers, appliedFrom, deleteCommands, diffServers } from './server-diff.ts';

export interface HaproxyDataPlaneOptions {
  source: RoutingTableSource;
  host?: string;
  /** 0: a free port picked here (HAProxy needs a number in its config). */
  port?: number;
  logger?: Logger;
  /** HAProxy's `nbthread`; default 1 (one core, as the own proxy's one process). */
  threads?: number;
  /** The haproxy binary; default `haproxy` on PATH. */
  binary?: string;
  /**
   * How old the in-flight counts (`show stat`) may be when something reads them: older ones are
   * read again, then; default 200 ms. Nothing reading: no question to HAProxy beyond the
   * background read (statsBackgroundMs) and one after each routing change.
   */
  statsIntervalMs?: number;
  /** How often the counts are read with no reader (scale to zero's idle signal); default 1 s. */
  statsBackgroundMs?: number;
}

/** The running data plane, plus what tests and the bench may look at. */
export interface HaproxyDataPlane extends FlotillaProxy {
  /** Reloads done since start (each a config change beyond servers). */
  readonly reloads: number;
  /** The master process's pid. */
  readonly pid: number;
  /** Resolves once every table received so far is applied (for tests). */
  settled(): Promise<void>;
  /** The runtime API, for tests and operators. */
  runtime(command: string): Promise<string>;
}

const CLOSE_GRACE_MS = 5_000;

function levelOf(load: number): AdmissionLevel {
  if (load >= 1) return 'critical';
  if (load >= 0.9) return 'degraded';
  if (load >= 0.7) return 'stressed';
  return 'healthy';
}

export async function createHaproxyDataPlane(
  opts: HaproxyDataPlaneOptions,
): Promise<HaproxyDataPlane> {
  const log = (opts.logger ?? pino({ level: 'silent' })).child({
    component: 'proxy',
    dataPlane: 'haproxy',
  });
  const host = opts.host ?? '127.0.0.1';
  const listen: ListenSpec = {
    host,
    port: opts.port || (await freePort(host)),
    threads: Math.max(1, Math.floor(opts.threads ?? 1)),
  };
  const binary = opts.binary ?? 'haproxy';
  const paths = haproxyPaths(await mkdtemp(join(tmpdir(), 'flotilla-haproxy-')));

  let backends: BackendSpec[] = backendsOf(opts.source.current());
  let appliedKey = structureKey(listen, backends);
  let applied: AppliedServers = appliedFrom(backends);
  let reloads = 0;

  async function writeAtomic(path: string, text: string): Promise<void> {
    await writeFile(`${path}.tmp`, text);
    await rename(`${path}.tmp`, path);
  }
  async function writeFiles(bs: BackendSpec[]): Promise<void> {
    const maps = renderMaps(bs);
    await writeAtomic(paths.backendsMap, maps.backends);
    await writeAtomic(paths.replicasMap, maps.replicas);
    await writeAtomic(paths.failStaticMap, maps.failStatic);
    await writeAtomic(paths.config, renderConfig(listen, bs, paths));
  }

  let proc: HaproxyProcess;
  try {
    await writeFiles(backends);
    proc = await startHaproxy({ binary, paths, logger: log });
  } catch (err) {
    await rm(paths.dir, { recursive: true, force: true });
    throw err;
  }

  // HAProxy gone on its own: /health reports the data plane as not serving (a restart helps).
  let dead = false;
  proc.onExit(() => {
    dead = true;
  });

  // Every change to HAProxy goes through this queue, in table order.
  let closed = false;
  const queue = serialQueue({
    closed: () => closed,
    onError: (err) => log.error({ err }, 'haproxy: applying the routing table failed'),
  });

  async function reload(next: BackendSpec[], key: string): Promise<void> {
    await writeFiles(next);
    await proc.reload();
    reloads++;
    backends = next;
    appliedKey = key;
    applied = appliedFrom(next);
    pending.clear();
    log.info({ reloads, backends: next.length }, 'haproxy reloaded');
  }

  async function apply(table: RoutingTable): Promise<void> {
    const next = backendsOf(table);
    const key = structureKey(listen, next);
    if (key !== appliedKey) return reload(next, key);
    const diff = diffServers(applied, next, paths);
    for (const command of diff.commands) {
      const answer = await runtimeCommand(paths.adminSocket, command);
      if (!isOkAnswer(answer)) {
        // The runtime state is unknown now: a reload rebuilds it from the table.
        log.warn(
          { command, answer: answer.trim() },
          'haproxy refused a runtime command; reloading',
        );
        return reload(next, key);
      }
    }
    applied = diff.next;
    backends = next;
    for (const r of diff.removals) pending.set(`${r.backend}/${r.server}`, r);
    if (diff.commands.length > 0) {
      log.debug(
        { commands: diff.commands.length, version: table.version },
        'haproxy servers updated',
      );
    }
    // Map files follow too, so a restart of HAProxy outside our control reads current values.
    const maps = renderMaps(next);
    await writeAtomic(paths.replicasMap, maps.replicas);
    await writeAtomic(paths.failStaticMap, maps.failStatic);
  }

  // Servers taken out of the table: deleted once their last request ended (HAProxy refuses
  // `del server` while a server has connections).
  const pending = new Map<string, { backend: string; server: string }>();
  async function deletePending(): Promise<void> {
    for (const [key, r] of pending) {
      const [del, ...maps] = deleteCommands(r.backend, r.server, paths);
      const answer = await runtimeCommand(paths.adminSocket, del!);
      if (!isOkAnswer(answer)) continue;
      for (const c of maps) await runtimeCommand(paths.adminSocket, c);
      pending.delete(key);
      applied.get(r.backend)?.delete(r.server);
    }
  }
  const deleter = setInterval(() => {
    if (pending.size > 0) void queue.push(deletePending);
  }, 250);
  deleter.unref();

  // In-flight counts per server from `show stat`: read when a reader finds them older than
  // statsIntervalMs, after each applied routing change, and every statsBackgroundMs otherwise.
  // Not on a short fixed tick: the manager's CPU counts against the data plane's (bench/proxy),
  // and with nobody reading (no drain, no /health, no autoscaler) the counts are not needed.
  const freshMs = opts.statsIntervalMs ?? 200;
  const backgroundMs = Math.max(freshMs, opts.statsBackgroundMs ?? 1_000);
  let current = new Map<string, number>();
  let backendQueue = new Map<string, number>();
  let backendTotal = new Map<string, number>();
  // The last time each deployment (by id) took a request or held one: scale to zero's idle
  // signal, as the own proxy's lastRequests(). Seen at the reads' resolution.
  const lastRequest = new Map<string, number>();
  // Tables received (changeGen), applied (appliedGen), and the one the counts were read after
  // (statsGen): counts read before the latest table was applied may miss a drain it started,
  // so inflight() does not report such a route as drained (see there).
  let changeGen = 0;
  let appliedGen = 0;
  let statsGen = -1;
  let statsAt = 0;
  let reading: Promise<void> | null = null;
  let again = false;
  /** Reads the counts now, or once more after the read under way. */
  function refresh(): Promise<void> {
    if (closed) return Promise.resolve();
    if (reading) {
      again = true;
      return reading;
    }
    reading = poll().finally(() => {
      reading = null;
      if (again) {
        again = false;
        void refresh();
      }
    });
    return reading;
  }
  /**
   * A reader's look at the counts: read again in the background when they are too old (not
   * once more when a read is under way: it brings fresh ones).
   */
  function touch(): void {
    if (!reading && Date.now() - statsAt > freshMs) void refresh();
  }
  async function poll(): Promise<void> {
    const gen = appliedGen;
    try {
      // Backends and servers only (type 2|4): the frontend rows are not used.
      const s = parseShowStat(await runtimeCommand(paths.adminSocket, 'show stat -1 6 -1', 2_000));
      current = new Map(s.servers.map((x) => [`${x.backend}/${x.server}`, x.current]));
      backendQueue = s.backendQueue;
      const now = Date.now();
      for (const b of backends) {
        const total = s.backendTotal.get(b.name) ?? 0;
        const busy = (backendQueue.get(b.name) ?? 0) > 0 || total !== backendTotal.get(b.name);
        if (busy && backendTotal.has(b.name)) lastRequest.set(b.deploymentId, now);
      }
      backendTotal = s.backendTotal;
      statsAt = now;
      statsGen = gen;
    } catch (err) {
      log.debug({ err }, 'haproxy: show stat failed');
    }
  }
  await refresh();
  const poller = setInterval(() => {
    if (Date.now() - statsAt >= backgroundMs - 5) void refresh();
  }, backgroundMs);
  poller.unref();

  // Each table applied, then the counts read: a drain it started is seen at once.
  const onTable = (t: RoutingTable) => {
    const gen = ++changeGen;
    void queue
      .push(() => apply(t))
      .then(() => {
        appliedGen = Math.max(appliedGen, gen);
        return refresh();
      });
  };
  const unsubscribe = opts.source.subscribe(onTable);
  // A table published while HAProxy started.
  onTable(opts.source.current());

  function backendOf(deployment: string): BackendSpec | undefined {
    return backends.find((b) => b.deploymentName === deployment || b.deploymentId === deployment);
  }
  function status(deployment: string): DeploymentLoadStatus {
    touch();
    const b = backendOf(deployment);
    if (!b) return { level: 'healthy', inflight: 0, queued: 0, capacity: 0 };
    let inflight = 0;
    for (const s of applied.get(b.name)?.values() ?? []) {
      inflight += current.get(`${b.name}/${s.name}`) ?? 0;
    }
    const queued = backendQueue.get(b.name) ?? 0;
    const ready = b.servers.filter((s) => s.state === 'ready').length;
    const capacity = ready * b.settings.maxconn;
    const load = capacity === 0 ? (inflight + queued > 0 ? 1 : 0) : (inflight + queued) / capacity;
    return { level: levelOf(load), inflight, queued, capacity };
  }

  const metrics = new Registry();
  const loadGauge = (name: string, help: string, pick: (s: DeploymentLoadStatus) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['deployment'],
      registers: [metrics],
      collect() {
        this.reset();
        for (const b of backends)
          this.set({ deployment: b.deploymentName }, pick(status(b.deploymentId)));
      },
    });
  loadGauge(
    'flotilla_proxy_inflight',
    'Requests in flight to replicas (HAProxy sessions)',
    (s) => s.inflight,
  );
  loadGauge('flotilla_proxy_queued', 'Requests waiting in the backend queue', (s) => s.queued);
  loadGauge(
    'flotilla_proxy_capacity',
    'Concurrent request slots: maxconn × ready servers',
    (s) => s.capacity,
  );
  new Gauge({
    name: 'flotilla_proxy_haproxy_reloads_total',
    help: 'HAProxy reloads since start (config changes beyond servers)',
    registers: [metrics],
    collect() {
      this.set(reloads);
    },
  });

  let closing: Promise<void> | undefined;
  const url = `http://${hostForUrl(host)}:${listen.port}`;
  return {
    port: listen.port,
    url,
    metrics,
    get reloads() {
      return reloads;
    },
    pid: proc.pid,
    inflight(routeId) {
      touch();
      let n = 0;
      let known = false;
      for (const [bname, servers] of applied) {
        for (const s of servers.values()) {
          if (s.routeId !== routeId) continue;
          known = true;
          n += current.get(`${bname}/${s.name}`) ?? 0;
        }
      }
      // Counts read before the latest table was applied are not trusted to say "drained": a
      // drain waits (at least 1) until they are read again after it.
      return known && statsGen < changeGen ? Math.max(1, n) : n;
    },
    status,
    lastRequests() {
      touch();
      const out = new Map(lastRequest);
      const now = Date.now();
      for (const b of backends)
        if (status(b.deploymentId).inflight > 0) out.set(b.deploymentId, now);
      return out;
    },
    // HAProxy does not hold requests for a deployment at zero (README "HAProxy data plane").
    held: () => 0,
    stats(): ProxyHealthStats {
      const all = backends.map((b) => ({
        deployment: b.deploymentName,
        ...status(b.deploymentName),
      }));
      const order: AdmissionLevel[] = ['healthy', 'stressed', 'degraded', 'critical'];
      const level = all.reduce<AdmissionLevel>(
        (w, s) => (order.indexOf(s.level) > order.indexOf(w) ? s.level : w),
        'healthy',
      );
      return {
        level,
        inflight: all.reduce((n, s) => n + s.inflight, 0),
        queued: all.reduce((n, s) => n + s.queued, 0),
        capacity: all.reduce((n, s) => n + s.capacity, 0),
        busiest: all
          .filter((s) => s.inflight + s.queued > 0)
          .sort((a, b) => b.inflight + b.queued - (a.inflight + a.queued))
          .slice(0, 20),
        serving: !closed && !dead,
      };
    },
    // HAProxy does no outlier ejection from live traffic (README "HAProxy data plane").
    onEvent: () => () => {},
    settled: () => queue.idle(),
    runtime: (command) => runtimeCommand(paths.adminSocket, command),
    close() {
      closing ??= (async () => {
        unsubscribe();
        clearInterval(deleter);
        clearInterval(poller);
        await queue.idle();
        closed = true;
        await proc.stop(CLOSE_GRACE_MS, async () => {
          // The admin socket goes with the soft-stopped worker: then nothing is left.
          const stat = parseShowStat(await runtimeCommand(paths.adminSocket, 'show stat', 1_000));
          const busy = stat.servers.some((x) => x.current > 0 || x.queued > 0);
          return !busy && [...stat.backendQueue.values()].every((q) => q === 0);
        });
        await rm(paths.dir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}
