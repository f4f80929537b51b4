/**
 * Shared by the replica-chaos and overload scenarios: one all-in-one `serve` on the suite's own
 * PostgreSQL (no Redis: the proxy runs in the process), closed-loop clients of the proxy that
 * can retry once, and per-window latency and error figures.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { settled } from './cluster.ts';
import type { Context } from './context.ts';
import { percentile } from './figures.ts';
import { call, type DeploymentView, listDeployments, until } from './http.ts';
import { killRun, ServeProcess } from './serve.ts';
import { createDatabase, freePort, ownPostgres, type Service } from './services.ts';

export interface Bed {
  serve: ServeProcess;
  api: string;
  proxy: string;
  runId: string;
  pg: Service;
  close(): Promise<void>;
}

/** One all-in-one `serve` (proxy in-process, one proxy worker) on its own PostgreSQL. */
export async function allInOne(ctx: Context, label: string): Promise<Bed> {
  const pg = await ownPostgres();
  const runId = `${ctx.runId}-${label}`;
  let serve: ServeProcess | undefined;
  const close = async () => {
    await serve?.stop(10_000);
    await killRun(runId);
    await pg.destroy();
  };
  try {
    const databaseUrl = await createDatabase(pg.url, 'faults');
    serve = new ServeProcess({
      role: 'all',
      label,
      apiPort: await freePort(),
      proxyPort: await freePort(),
      dataDir: mkdtempSync(join(tmpdir(), 'flotilla-faults-data-')),
      runId,
      logDir: `${ctx.logDir}/${label}`,
      env: { DATABASE_URL: databaseUrl, FLOTILLA_PROXY_WORKERS: '1' },
      extra: ['--health-interval', '0.5', '--log-level', 'info'],
    });
    await serve.start();
    return {
      serve,
      api: `http://127.0.0.1:${serve.spec.apiPort}`,
      proxy: `http://127.0.0.1:${serve.spec.proxyPort}`,
      runId,
      pg,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Creates a deployment, trying again for a minute while a starved PostgreSQL answers 503. */
export async function createDeployment(api: string, body: Record<string, unknown>): Promise<void> {
  let last = '';
  for (let i = 0; i < 60; i++) {
    const r = await call(api, 'POST', '/v1/deployments', body, 20_000);
    last = `${r.status} ${JSON.stringify(r.body)}`;
    if (r.status === 201 || r.status === 409) return;
    if (r.status !== 503 && r.status !== 0) break;
    await new Promise((res) => setTimeout(res, 1_000));
  }
  throw new Error(`create ${String(body.name)}: ${last}`);
}

/** The deployment once it is RUNNING with every replica and route HEALTHY. */
export async function settledView(
  api: string,
  name: string,
  timeoutMs: number,
): Promise<DeploymentView> {
  return until(
    async () => {
      const v = (await listDeployments(api, 5_000))?.find((d) => d.name === name);
      return v && settled(v) ? v : null;
    },
    timeoutMs,
    `${name} RUNNING with its replicas and routes HEALTHY`,
    200,
  );
}

/** One logical request of a client (a retry included). */
export interface Shot {
  start: number;
  end: number;
  status: number;
  ok: boolean;
  /** The proxy's error code (`overloaded`, …) or the connection error's code. */
  code: string;
  retried: boolean;
  /** `x-flotilla-load` of a rejection: the admission load the proxy decided at. */
  load?: number;
  /** `x-flotilla-replica`: the replica that answered (through the proxy). */
  replica?: string;
}

export interface ClientOptions {
  url: string;
  body: unknown;
  /** Retry once at once on a 5xx, a connection error or a timeout. */
  retryOnce: boolean;
  timeoutMs: number;
  /** Pause after an answered request before the next. */
  pauseMs: number;
  /** Pause after a failed request (default pauseMs): a client backing off after a 503. */
  failPauseMs?: number;
}

function errCode(err: unknown): string {
  const e = err as { name?: string; cause?: { code?: string } };
  return e.cause?.code ?? e.name ?? 'error';
}

async function once(url: string, body: string, timeoutMs: number) {
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let code = '';
    if (res.status !== 200) {
      try {
        code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? '';
      } catch {
        // not JSON
      }
    }
    const l = res.headers.get('x-flotilla-load');
    return {
      status: res.status,
      code,
      load: l === null ? undefined : Number(l),
      replica: res.headers.get('x-flotilla-replica') ?? undefined,
    };
  } catch (err) {
    return { status: 0, code: errCode(err), load: undefined, replica: undefined };
  }
}

/** Closed-loop clients: each sends a request, waits for its answer, pauses, sends the next. */
export class ClientGroup {
  readonly shots: Shot[] = [];
  private target = 0;
  private readonly loops: Promise<void>[] = [];
  private readonly body: string;
  /** Start times of the requests in flight now. */
  private readonly inflight = new Set<{ start: number }>();

  constructor(private readonly o: ClientOptions) {
    this.body = JSON.stringify(o.body);
  }

  get size(): number {
    return this.target;
  }

  /** Grows to `n` clients (never shrinks; `stop()` ends them all). */
  grow(n: number): void {
    this.target = Math.max(this.target, n);
    while (this.loops.length < this.target) this.loops.push(this.loop());
  }

  async stop(): Promise<void> {
    this.target = 0;
    await Promise.all(this.loops.splice(0));
  }

  /** Whether every request in flight now started at or after `t` (none is left from before). */
  nothingFrom(t: number): boolean {
    for (const r of this.inflight) if (r.start < t) return false;
    return true;
  }

  private async loop(): Promise<void> {
    while (this.target > 0) {
      const start = performance.now();
      const mark = { start };
      this.inflight.add(mark);
      let a = await once(this.o.url, this.body, this.o.timeoutMs);
      let retried = false;
      if (this.o.retryOnce && (a.status === 0 || a.status >= 500)) {
        retried = true;
        a = await once(this.o.url, this.body, this.o.timeoutMs);
      }
      const ok = a.status === 200;
      this.inflight.delete(mark);
      this.shots.push({ start, end: performance.now(), ok, retried, ...a });
      await new Promise((r) =>
        setTimeout(r, ok ? this.o.pauseMs : (this.o.failPauseMs ?? this.o.pauseMs)),
      );
    }
  }
}

export interface WindowStats {
  sent: number;
  failed: number;
  retried: number;
  p50: number;
  p99: number;
  /** Failures by status (0 = connection error/timeout) and code. */
  failures: Record<string, number>;
}

/** Requests that started in [from, to). */
export function windowStats(shots: readonly Shot[], from: number, to: number): WindowStats {
  const w = shots.filter((s) => s.start >= from && s.start < to);
  const failures: Record<string, number> = {};
  for (const s of w) {
    if (s.ok) continue;
    const k = `${s.status}${s.code ? ` ${s.code}` : ''}`;
    failures[k] = (failures[k] ?? 0) + 1;
  }
  const lat = w.map((s) => s.end - s.start);
  return {
    sent: w.length,
    failed: w.filter((s) => !s.ok).length,
    retried: w.filter((s) => s.retried).length,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    failures,
  };
}

/** Resident set (VmRSS) and its peak (VmHWM) of a process, bytes; null when it is gone. */
export function rss(pid: number): { rss: number; hwm: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return null;
  }
}

export const fmtMs = (x: number) => (Number.isNaN(x) ? '–' : `${Math.round(x)} ms`);
export const fmtPct = (n: number, d: number) => (d === 0 ? '–' : `${((100 * n) / d).toFixed(1)}%`);
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
