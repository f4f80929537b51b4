/** HTTP helpers with deadlines: a fault suite never waits on a socket without a limit. */

export interface Answer<T = unknown> {
  status: number;
  body: T;
  /** Network error or timeout (status 0). */
  error?: string;
  ms: number;
}

export async function call<T = unknown>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 5_000,
): Promise<Answer<T>> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, body: parsed as T, ms: performance.now() - t0 };
  } catch (err) {
    return {
      status: 0,
      body: undefined as T,
      error: describeError(err),
      ms: performance.now() - t0,
    };
  }
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return `${err.name}: ${err.message}${cause ? ` (${cause.code ?? cause.message})` : ''}`;
}

/** Whether a failed call certainly never reached the server (nothing listened). */
export function neverSent(a: Answer): boolean {
  return a.status === 0 && (a.error?.includes('ECONNREFUSED') ?? false);
}

/** Polls `check` until it returns a truthy value; throws with `message` after `timeoutMs`. */
export async function until<T>(
  check: () => T | Promise<T>,
  timeoutMs: number,
  message: string | (() => string),
  intervalMs = 100,
): Promise<NonNullable<T>> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) {
      const m = typeof message === 'function' ? message() : message;
      throw new Error(
        `${m} (not within ${timeoutMs} ms)${last ? `; last error: ${String(last)}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export interface DeploymentView {
  id: string;
  name: string;
  state: string;
  reason: string | null;
  target_replicas: number;
  revision_id: string | null;
  revision: { environ?: Record<string, string> } | null;
  session: { environ?: Record<string, string> } | null;
  replicas: Array<{
    id: string;
    state: string;
    endpoint: string | null;
    revision_id: string;
    route_id: string;
    restarts: number;
  }>;
  routes: Array<{
    id: string;
    replica_id: string;
    state: string;
    last_health: { class: string; reason: string; at: string } | null;
  }>;
}

export async function listDeployments(
  api: string,
  timeoutMs = 5_000,
): Promise<DeploymentView[] | null> {
  const r = await call<{ items: DeploymentView[] }>(
    api,
    'GET',
    '/v1/deployments',
    undefined,
    timeoutMs,
  );
  return r.status === 200 ? r.body.items : null;
}
