/**
 * Splitting `/{name}/{rest}?{query}` into the deployment/endpoint name and the path the
 * replica receives, without letting the rest climb out of the prefix.
 */

/** Result of parsing a request target for proxying. */
export type ProxyPath =
  | { ok: true; name: string; path: string }
  | { ok: false; reason: 'not_found' | 'escape' | 'bad_encoding' };

const NOT_FOUND: ProxyPath = Object.freeze({ ok: false, reason: 'not_found' });

/**
 * Parses a request target. The name is the first path segment exactly as sent
 * (percent-decoded, never normalised together with the rest), so `/a/../b/x` is
 * deployment `a` asked for `/../b/x`, which climbs above `a`'s root and is refused as an
 * `escape`; it can never reach `b`. Dot segments inside the rest (`.`, `..`, and their
 * percent-encoded forms) are resolved (RFC 3986 §5.2.4); empty segments and other
 * encodings are forwarded untouched. The query string is kept byte for byte.
 * Absolute-form targets (`http://host/path`) are reduced to their path.
 */
export function parseProxyPath(target: string): ProxyPath {
  let url = target;
  if (url.charCodeAt(0) !== 47 /* / */) {
    // absolute-form (RFC 9112 §3.2.2): drop scheme and authority.
    const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*/.exec(url);
    if (!m) return NOT_FOUND;
    url = url.slice(m[0].length) || '/';
    if (url.charCodeAt(0) !== 47) url = `/${url}`;
  }
  const q = url.indexOf('?');
  const pathname = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q);
  const slash = pathname.indexOf('/', 1);
  const rawName = slash === -1 ? pathname.slice(1) : pathname.slice(1, slash);
  if (rawName.length === 0) return NOT_FOUND;
  let name = rawName;
  if (rawName.includes('%')) {
    try {
      name = decodeURIComponent(rawName);
    } catch {
      return { ok: false, reason: 'bad_encoding' };
    }
  }
  if (name === '.' || name === '..' || name.includes('/')) return NOT_FOUND;
  const rest = slash === -1 ? '/' : pathname.slice(slash);
  // Fast path: no dot segment possible without a '.' or a '%'.
  if (!rest.includes('.') && !rest.includes('%')) return { ok: true, name, path: rest + query };
  const resolved = resolveDotSegments(rest);
  if (resolved === undefined) return { ok: false, reason: 'escape' };
  return { ok: true, name, path: resolved + query };
}

function dotKind(segment: string): 0 | 1 | 2 {
  if (segment.length === 0 || segment.length > 6) return 0;
  const s = segment.replace(/%2e/gi, '.');
  if (s === '.') return 1;
  if (s === '..') return 2;
  return 0;
}

/**
 * Resolves `.` and `..` in an absolute path; undefined when `..` would go above the root.
 * A path ending in a dot segment keeps a trailing slash (`/a/b/..` → `/a/`).
 */
export function resolveDotSegments(path: string): string | undefined {
  const segments = path.split('/');
  // segments[0] is '' (the path starts with '/').
  const out: string[] = [];
  let trailingSlash = false;
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i]!;
    const kind = dotKind(seg);
    const last = i === segments.length - 1;
    if (kind === 1) {
      if (last) trailingSlash = true;
      continue;
    }
    if (kind === 2) {
      if (out.length === 0) return undefined;
      out.pop();
      if (last) trailingSlash = true;
      continue;
    }
    out.push(seg);
  }
  let result = `/${out.join('/')}`;
  if (trailingSlash && !result.endsWith('/')) result += '/';
  return result;
}
