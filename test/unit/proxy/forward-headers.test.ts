import { describe, expect, it } from 'vitest';
import { buildResponseHeaders, scanRequestHeaders } from '../../../src/proxy/forward-headers.ts';

const pairs = (flat: string[]) => {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!.toLowerCase(), flat[i + 1]!]);
  return out;
};

describe('request headers to the replica', () => {
  it('drops hop-by-hop headers and any named in Connection, keeps end-to-end ones', () => {
    const scan = scanRequestHeaders(
      [
        'Host',
        'proxy:8080',
        'Connection',
        'keep-alive, X-Private',
        'X-Private',
        'secret',
        'Keep-Alive',
        'timeout=5',
        'Proxy-Authorization',
        'Basic x',
        'TE',
        'trailers',
        'Upgrade',
        'h2c',
        'Authorization',
        'Bearer t',
        'Content-Type',
        'application/json',
        'Content-Length',
        '12',
      ],
      '::ffff:10.0.0.7',
      'http',
    );
    const names = pairs(scan.headers).map(([n]) => n);
    for (const gone of [
      'host',
      'connection',
      'x-private',
      'keep-alive',
      'proxy-authorization',
      'te',
      'upgrade',
    ]) {
      expect(names).not.toContain(gone);
    }
    expect(Object.fromEntries(pairs(scan.headers))).toMatchObject({
      authorization: 'Bearer t',
      'content-type': 'application/json',
      'content-length': '12',
      'x-forwarded-for': '10.0.0.7',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'proxy:8080',
    });
    expect(scan.contentLength).toBe(12);
    expect(scan.chunked).toBe(false);
  });

  it('appends the client to X-Forwarded-For and replaces a spoofed -Proto/-Host', () => {
    const scan = scanRequestHeaders(
      [
        'Host',
        'p',
        'X-Forwarded-For',
        '1.1.1.1',
        'X-Forwarded-Proto',
        'https',
        'X-Forwarded-Host',
        'evil',
        'Transfer-Encoding',
        'chunked',
      ],
      '127.0.0.1',
      'http',
    );
    const h = Object.fromEntries(pairs(scan.headers));
    expect(h['x-forwarded-for']).toBe('1.1.1.1, 127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-host']).toBe('p');
    expect(h['transfer-encoding']).toBeUndefined();
    expect(scan.chunked).toBe(true);
  });

  it('reads x-flotilla-priority as an integer, 0 otherwise', () => {
    expect(scanRequestHeaders(['X-Flotilla-Priority', '7'], '', 'http').priority).toBe(7);
    expect(scanRequestHeaders(['X-Flotilla-Priority', 'high'], '', 'http').priority).toBe(0);
    expect(scanRequestHeaders([], '', 'http').priority).toBe(0);
  });
});

describe('response headers to the client', () => {
  it('drops hop-by-hop headers and Connection-named ones, adds x-flotilla-replica', () => {
    const raw = [
      'Content-Type',
      'text/plain',
      'Connection',
      'X-Hop',
      'X-Hop',
      '1',
      'Keep-Alive',
      'timeout=5',
      'Transfer-Encoding',
      'chunked',
      'Set-Cookie',
      'a',
      'Set-Cookie',
      'b',
      'X-Flotilla-Replica',
      'spoofed',
    ].map((s) => Buffer.from(s, 'latin1'));
    const out = pairs(buildResponseHeaders(raw, 'replica-1', true));
    expect(out).toEqual([
      ['content-type', 'text/plain'],
      ['set-cookie', 'a'],
      ['set-cookie', 'b'],
      ['x-flotilla-replica', 'replica-1'],
      ['x-flotilla-fail-static', '1'],
    ]);
  });

  it('reports the Content-Length it forwards, in any case, and none when Connection names it', () => {
    const raw = (...h: string[]) => h.map((x) => Buffer.from(x, 'latin1'));
    const scan = { fixedLength: false, contentLength: -1 };
    buildResponseHeaders(
      raw('Content-Type', 'text/plain', 'CONTENT-LENGTH', '42'),
      'r',
      false,
      scan,
    );
    expect(scan).toEqual({ fixedLength: true, contentLength: 42 });
    buildResponseHeaders(raw('content-length', 'x'), 'r', false, scan);
    expect(scan).toEqual({ fixedLength: true, contentLength: -1 });
    buildResponseHeaders(raw('Content-Type', 'text/event-stream'), 'r', false, scan);
    expect(scan).toEqual({ fixedLength: false, contentLength: -1 });
    const out = buildResponseHeaders(
      raw('Connection', 'content-length', 'Content-Length', '3'),
      'r',
      false,
      scan,
    );
    expect(scan).toEqual({ fixedLength: false, contentLength: -1 });
    expect(pairs(out)).toEqual([['x-flotilla-replica', 'r']]);
  });
});

describe('the Forwarded header (RFC 7239), treated like X-Forwarded-*', () => {
  it("appends this hop's element with the client address, proto and host this proxy saw", () => {
    const scan = scanRequestHeaders(
      ['Host', 'api.example:8080', 'Forwarded', 'for=1.2.3.4;proto=https;host=evil.example'],
      '::ffff:10.0.0.7',
      'http',
    );
    const forwarded = pairs(scan.headers).filter(([n]) => n === 'forwarded');
    expect(forwarded).toEqual([
      [
        'forwarded',
        'for=1.2.3.4;proto=https;host=evil.example, for=10.0.0.7;proto=http;host="api.example:8080"',
      ],
    ]);
  });

  it('sets it when the client sent none, quoting an IPv6 client in brackets', () => {
    const scan = scanRequestHeaders(['Host', 'h'], '2001:db8::1', 'https');
    expect(pairs(scan.headers).filter(([n]) => n === 'forwarded')).toEqual([
      ['forwarded', 'for="[2001:db8::1]";proto=https;host=h'],
    ]);
  });
});

describe("this hop's element kept per client connection", () => {
  it('gives the same headers as without the cache, and rebuilds when the host or address changes', () => {
    const hop = { remote: undefined, proto: '', host: '', client: '', element: '' };
    const requests: [string[], string][] = [
      [['Host', 'a.example', 'Forwarded', 'for=1.2.3.4'], '10.0.0.1'],
      [['Host', 'a.example'], '10.0.0.1'],
      [['Host', 'b example'], '10.0.0.1'],
      [['Host', 'b example', 'X-Forwarded-For', '9.9.9.9'], '::ffff:10.0.0.2'],
      [[], '::1'],
    ];
    for (const [raw, remote] of requests) {
      const cached = scanRequestHeaders(raw, remote, 'http', hop);
      expect(cached).toEqual(scanRequestHeaders(raw, remote, 'http'));
    }
    const last = Object.fromEntries(
      pairs(scanRequestHeaders(['Host', 'c'], '10.0.0.3', 'http', hop).headers),
    );
    expect(last.forwarded).toBe('for=10.0.0.3;proto=http;host=c');
    expect(last['x-forwarded-for']).toBe('10.0.0.3');
  });
});
