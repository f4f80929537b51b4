/**
 * Header rewriting between client and replica: hop-by-hop headers (RFC 9110 §7.6.1) and any
 * header named in `Connection` are dropped in both directions; X-Forwarded-* and `Forwarded`
 * are set on the way in; `x-flotilla-replica` is added on the way out.
 */

/** Hop-by-hop headers (RFC 9110 §7.6.1 and the legacy ones): never forwarded either way. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];

/** Hop-by-hop headers, plus ones the proxy owns (host, expect, x-forwarded-proto/-host). */
const DROP_REQUEST = new Set([
  ...HOP_BY_HOP,
  'host',
  // undici refuses `expect`; node:http has already answered 100-continue to the client.
  'expect',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-for',
  // RFC 7239: rebuilt like X-Forwarded-For, with this hop's element appended.
  'forwarded',
]);

const DROP_RESPONSE = new Set(HOP_BY_HOP);

/** What the proxy learns from one pass over the client's raw headers. */
export interface RequestHeaderScan {
  /** Flat [name, value, …] for the replica, X-Forwarded-* included. */
  headers: string[];
  /** `x-flotilla-priority`, 0 when absent or not an integer. */
  priority: number;
  /** Parsed Content-Length, -1 when absent. */
  contentLength: number;
  /** The request has a chunked (or otherwise length-less) body. */
  chunked: boolean;
}

/**
 * Header names listed in a Connection value beyond keep-alive/close (which are hop-by-hop
 * anyway); undefined for the usual `keep-alive` or `close`, so the common case allocates nothing.
 */
function connectionTokens(value: string, into: Set<string> | undefined): Set<string> | undefined {
  if (value.length <= 10) {
    const v = value.toLowerCase();
    if (v === 'keep-alive' || v === 'close') return into;
  }
  let out = into;
  for (const token of value.split(',')) {
    const t = token.trim().toLowerCase();
    if (!t || t === 'keep-alive' || t === 'close') continue;
    out ??= new Set();
    out.add(t);
  }
  return out;
}

/** Client address without the IPv4-mapped IPv6 prefix. */
export function clientAddress(remote: string | undefined): string {
  if (!remote) return '';
  return remote.startsWith('::ffff:') ? remote.slice(7) : remote;
}

/** RFC 7239 token characters; anything else is sent as a quoted-string. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function forwardedValue(v: string): string {
  return TOKEN.test(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`;
}

/** This hop's `Forwarded` element: `for=<client>;proto=<proto>[;host=<host>]` (RFC 7239 §4). */
function forwardedElement(client: string, proto: string, host: string): string {
  // An IPv6 address goes in brackets, and so in quotes (§6).
  const node = client.includes(':') ? `[${client}]` : client;
  const parts = [`for=${forwardedValue(node || 'unknown')}`, `proto=${proto}`];
  if (host) parts.push(`host=${forwardedValue(host)}`);
  return parts.join(';');
}

/**
 * This hop's part of the forwarding headers for one client connection: its requests come from
 * one address and nearly always name one host, so the `Forwarded` element is built once per
 * connection rather than once per request.
 */
export interface HopCache {
  remote: string | undefined;
  proto: string;
  host: string;
  client: string;
  element: string;
}

/**
 * Builds the replica's request headers from the client's raw headers. X-Forwarded-For gets
 * the client address appended to any it sent; X-Forwarded-Proto and -Host are replaced by what
 * this proxy saw (a client cannot spoof them through it). `Forwarded` (RFC 7239) is treated
 * alike: the client's elements are kept and this hop's element (`for`, `proto`, `host` as this
 * proxy saw them) is appended, so its last element, like X-Forwarded-For's last address, is
 * the one a replica can trust. `hop`, kept per client connection, saves rebuilding this hop's
 * element while the address, proto and host stay the same.
 */
export function scanRequestHeaders(
  raw: readonly string[],
  remoteAddress: string | undefined,
  proto: 'http' | 'https',
  hop?: HopCache,
): RequestHeaderScan {
  let connectionExtra: Set<string> | undefined;
  const headers: string[] = [];
  let priority = 0;
  let contentLength = -1;
  let chunked = false;
  let host = '';
  let xff = '';
  let forwarded = '';
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    switch (lower) {
      case 'host':
        host = value;
        continue;
      case 'connection':
        connectionExtra = connectionTokens(value, connectionExtra);
        continue;
      case 'x-forwarded-for':
        xff = xff ? `${xff}, ${value}` : value;
        continue;
      case 'forwarded':
        forwarded = forwarded ? `${forwarded}, ${value}` : value;
        continue;
      case 'transfer-encoding':
        chunked = true;
        continue;
      case 'content-length': {
        const n = Number(value);
        contentLength = Number.isSafeInteger(n) && n >= 0 ? n : -1;
        break;
      }
      case 'x-flotilla-priority': {
        const p = Number(value);
        if (Number.isInteger(p)) priority = Math.max(-1000, Math.min(1000, p));
        break;
      }
    }
    if (DROP_REQUEST.has(lower)) continue;
    headers.push(name, value);
  }
  // Headers named in Connection (rare): dropped once every Connection header is known.
  if (connectionExtra) {
    for (let i = headers.length - 2; i >= 0; i -= 2) {
      if (connectionExtra.has(headers[i]!.toLowerCase())) headers.splice(i, 2);
    }
  }
  let client: string;
  let element: string;
  if (hop && hop.remote === remoteAddress && hop.proto === proto && hop.host === host) {
    client = hop.client;
    element = hop.element;
  } else {
    client = clientAddress(remoteAddress);
    element = forwardedElement(client, proto, host);
    if (hop) {
      hop.remote = remoteAddress;
      hop.proto = proto;
      hop.host = host;
      hop.client = client;
      hop.element = element;
    }
  }
  headers.push('x-forwarded-for', xff ? `${xff}, ${client}` : client, 'x-forwarded-proto', proto);
  if (host) headers.push('x-forwarded-host', host);
  headers.push('forwarded', forwarded ? `${forwarded}, ${element}` : element);
  return { headers, priority, contentLength, chunked };
}

/** What buildResponseHeaders learns on its pass over the replica's headers. */
export interface ResponseHeaderScan {
  /** A Content-Length header is forwarded (the body has a fixed length). */
  fixedLength: boolean;
  /** Its value when it is a safe non-negative integer, else -1. */
  contentLength: number;
}

/**
 * Lengths of the response header names the pass must look at (hop-by-hop, Connection,
 * Content-Length, x-flotilla-replica): any other name is copied without lower-casing it.
 */
const RESPONSE_NAME_LENGTHS = new Uint8Array(32);
for (const n of [...DROP_RESPONSE, 'connection', 'content-length', 'x-flotilla-replica'])
  RESPONSE_NAME_LENGTHS[n.length] = 1;

/**
 * Builds the client's response headers from the replica's raw headers (latin1 buffers as
 * undici hands them over), adding `x-flotilla-replica` and, when serving from a DEGRADED
 * route, `x-flotilla-fail-static: 1`. `scan`, when given, receives the Content-Length.
 */
export function buildResponseHeaders(
  raw: readonly Buffer[],
  replicaId: string,
  failStatic: boolean,
  scan?: ResponseHeaderScan,
): string[] {
  const out: string[] = [];
  let connectionExtra: Set<string> | undefined;
  let fixedLength = false;
  let contentLength = -1;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1');
    const value = raw[i + 1]!.toString('latin1');
    if (name.length < 32 && RESPONSE_NAME_LENGTHS[name.length] === 1) {
      const lower = name.toLowerCase();
      if (lower === 'connection') {
        connectionExtra = connectionTokens(value, connectionExtra);
        continue;
      }
      if (DROP_RESPONSE.has(lower) || lower === 'x-flotilla-replica') continue;
      if (lower === 'content-length' && !fixedLength) {
        fixedLength = true;
        const n = Number(value);
        contentLength = Number.isSafeInteger(n) && n >= 0 ? n : -1;
      }
    }
    out.push(name, value);
  }
  if (connectionExtra) {
    for (let i = out.length - 2; i >= 0; i -= 2) {
      if (connectionExtra.has(out[i]!.toLowerCase())) out.splice(i, 2);
    }
    if (connectionExtra.has('content-length')) {
      fixedLength = false;
      contentLength = -1;
    }
  }
  out.push('x-flotilla-replica', replicaId);
  if (failStatic) out.push('x-flotilla-fail-static', '1');
  if (scan) {
    scan.fixedLength = fixedLength;
    scan.contentLength = contentLength;
  }
  return out;
}
