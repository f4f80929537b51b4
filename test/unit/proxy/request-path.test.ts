import { describe, expect, it } from 'vitest';
import { parseProxyPath, resolveDotSegments } from '../../../src/proxy/request-path.ts';

describe('proxy path parsing', () => {
  it.each([
    ['/m/v1/chat/completions', 'm', '/v1/chat/completions'],
    ['/m', 'm', '/'],
    ['/m/', 'm', '/'],
    ['/m?x=1', 'm', '/?x=1'],
    ['/m/a/b/?q=a/../b&r=%2e%2e', 'm', '/a/b/?q=a/../b&r=%2e%2e'],
    ['/m/a//b', 'm', '/a//b'],
    ['/m/a/./b/../c', 'm', '/a/c'],
    ['/m/a/b/..', 'm', '/a/'],
    ['/m/a/%2E%2e/c', 'm', '/c'],
    ['/m/file.txt', 'm', '/file.txt'],
    ['/m/a%2f..%2fb', 'm', '/a%2f..%2fb'],
    ['/my%20model/x', 'my model', '/x'],
    ['http://proxy.example:8080/m/x?y', 'm', '/x?y'],
  ])('%s → name %s, path %s', (target, name, path) => {
    expect(parseProxyPath(target)).toEqual({ ok: true, name, path });
  });

  it.each([
    '/m/../other/x',
    '/m/..',
    '/m/%2e%2e/other',
    '/m/.%2E/other',
    '/m/a/../../other',
    '/m/./../x',
  ])('refuses %s: it climbs out of the prefix', (target) => {
    expect(parseProxyPath(target)).toEqual({ ok: false, reason: 'escape' });
  });

  it.each(['/', '//m/x', '/../m/x', '/./m', '/%2e%2e/m', '/a%2fb/x', '*'])(
    '%s names nothing',
    (target) => {
      expect(parseProxyPath(target)).toEqual({ ok: false, reason: 'not_found' });
    },
  );

  it('refuses a name with broken percent-encoding', () => {
    expect(parseProxyPath('/%E0%A4%A/x')).toEqual({ ok: false, reason: 'bad_encoding' });
  });

  it('resolves dot segments like RFC 3986 within the root', () => {
    expect(resolveDotSegments('/a/b/c/./../../g')).toBe('/a/g');
    expect(resolveDotSegments('/.')).toBe('/');
    expect(resolveDotSegments('/..')).toBeUndefined();
  });
});
