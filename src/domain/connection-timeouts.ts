/**
 * Time limits on client connections of an HTTP port (the proxy's and the API's). Each phase in
 * which the client owes bytes has a limit, so an idle, silent, trickling or slow-body client
 * cannot hold a connection open: `headersMs` from the connection (or the end of the previous
 * response) to the end of the request's headers, `requestMs` to the end of its body,
 * `keepAliveMs` idle between two requests. 0 disables one.
 */
export interface ConnectionTimeouts {
  headersMs: number;
  requestMs: number;
  keepAliveMs: number;
}

/** The proxy's defaults (README "Connection timeouts"). */
export const PROXY_CONNECTION_TIMEOUTS: ConnectionTimeouts = Object.freeze({
  headersMs: 10_000,
  requestMs: 30_000,
  keepAliveMs: 30_000,
});

/** The API port's and single-role processes' defaults (README "Connection timeouts"). */
export const API_CONNECTION_TIMEOUTS: ConnectionTimeouts = Object.freeze({
  headersMs: 10_000,
  requestMs: 30_000,
  keepAliveMs: 5_000,
});

/**
 * The options of node:http's `createServer` for these limits. Node checks the headers and
 * request limits only every `connectionsCheckingInterval` (30 s by default, which let a silent
 * client stay about a minute): check at a quarter of the shortest limit, at most every second.
 * Node refuses a request limit shorter than the headers limit, so it is raised to it.
 */
export function httpServerTimeouts(
  base: ConnectionTimeouts,
  given: Partial<ConnectionTimeouts> = {},
): {
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  connectionsCheckingInterval: number;
} {
  const t = { ...base, ...given };
  const requestTimeout = t.requestMs > 0 ? Math.max(t.requestMs, t.headersMs) : 0;
  const limits = [t.headersMs, requestTimeout].filter((ms) => ms > 0);
  const shortest = limits.length ? Math.min(...limits) : 4_000;
  return {
    headersTimeout: t.headersMs,
    requestTimeout,
    keepAliveTimeout: t.keepAliveMs,
    connectionsCheckingInterval: Math.max(25, Math.min(1_000, Math.floor(shortest / 4))),
  };
}

/**
 * Fastify's options for the connection limits: it sets keep-alive and request limits on its
 * server itself (its defaults: 72 s and none), the rest go to node:http's `createServer`. The
 * socket idle limit is a backstop for a client that stops reading; it stays above the event
 * stream's 15 s heartbeat.
 */
export function fastifyTimeouts(given: Partial<ConnectionTimeouts> = {}) {
  const t = httpServerTimeouts(API_CONNECTION_TIMEOUTS, given);
  return {
    keepAliveTimeout: t.keepAliveTimeout,
    requestTimeout: t.requestTimeout,
    connectionTimeout: API_SOCKET_IDLE_MS,
    http: {
      headersTimeout: t.headersTimeout,
      connectionsCheckingInterval: t.connectionsCheckingInterval,
    },
  };
}

/** No byte either way for this long closes an API connection. */
export const API_SOCKET_IDLE_MS = 120_000;
