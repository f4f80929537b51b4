/**
 * Host names in URLs. An IPv6 literal must be bracketed in a URL (`http://[::1]:8080`,
 * RFC 3986 §3.2.2); names and IPv4 addresses are written as they are.
 */

/** `host` as it goes into a URL's authority: IPv6 literals bracketed, anything else unchanged. */
export function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** `http://host:port`, no trailing slash, IPv6 literals bracketed. */
export function httpUrl(host: string, port: number): string {
  return `http://${hostForUrl(host)}:${port}`;
}
