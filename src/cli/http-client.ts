/**
 * The CLI's HTTP client for the Flotilla API (Node's fetch, i.e. undici). Errors come back as
 * ApiError (the server answered with an error body) or NoServerError (nothing answered).
 */

import type { ErrorDetail } from '../domain/errors.ts';
import type { ClientConfig } from './client-config.ts';

/** The API answered with an error. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: ErrorDetail[] = [],
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** No server answered at the configured address (refused, unknown host, timed out). */
export class NoServerError extends Error {
  constructor(
    readonly api: string,
    cause: unknown,
  ) {
    super(`no Flotilla API answers at ${api} (is \`flotilla serve\` running?)`, { cause });
    this.name = 'NoServerError';
  }
}

export interface ApiClient {
  readonly api: string;
  get<T>(path: string): Promise<T>;
  post<T>(path: string, body?: unknown): Promise<T>;
  patch<T>(path: string, body?: unknown): Promise<T>;
  delete<T>(path: string): Promise<T>;
  /** A text/plain resource (logs). */
  text(path: string): Promise<string>;
}

const NO_SERVER = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

function causeCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

export function createClient(config: ClientConfig, opts: { timeoutMs?: number } = {}): ApiClient {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  async function call(method: string, path: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (config.token) headers.authorization = `Bearer ${config.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      return await fetch(`${config.api}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const code = causeCode(err);
      // fetch reports every network failure as TypeError('fetch failed') with the cause.
      if (
        (code && NO_SERVER.has(code)) ||
        (err as Error).name === 'TimeoutError' ||
        (err instanceof TypeError && err.message === 'fetch failed')
      ) {
        throw new NoServerError(config.api, err);
      }
      throw err;
    }
  }
  async function json<T>(res: Response): Promise<T> {
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? null : JSON.parse(text);
    } catch {
      throw new ApiError(
        res.status,
        'unexpected_response',
        `the server at ${config.api} did not answer like a Flotilla API (HTTP ${res.status})`,
      );
    }
    if (res.ok) return parsed as T;
    const e = (parsed as { error?: { code?: string; message?: string; details?: ErrorDetail[] } })
      ?.error;
    if (!e || typeof e.code !== 'string') {
      throw new ApiError(
        res.status,
        'unexpected_response',
        `the server at ${config.api} did not answer like a Flotilla API (HTTP ${res.status})`,
      );
    }
    throw new ApiError(res.status, e.code, e.message ?? e.code, e.details ?? []);
  }
  return {
    api: config.api,
    get: async (path) => json(await call('GET', path)),
    post: async (path, body) => json(await call('POST', path, body ?? {})),
    patch: async (path, body) => json(await call('PATCH', path, body ?? {})),
    delete: async (path) => json(await call('DELETE', path)),
    async text(path) {
      const res = await call('GET', path);
      if (!res.ok) return json<never>(res);
      return res.text();
    },
  };
}
