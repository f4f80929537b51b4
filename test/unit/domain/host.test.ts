import { describe, expect, it } from 'vitest';
import { hostForUrl, httpUrl } from '../../../src/domain/host.ts';

describe('hostForUrl', () => {
  it('brackets IPv6 literals and leaves names and IPv4 addresses alone', () => {
    expect(hostForUrl('::1')).toBe('[::1]');
    expect(hostForUrl('fe80::1%eth0')).toBe('[fe80::1%eth0]');
    expect(hostForUrl('127.0.0.1')).toBe('127.0.0.1');
    expect(hostForUrl('localhost')).toBe('localhost');
  });

  it('does not bracket an already bracketed literal twice', () => {
    expect(hostForUrl('[::1]')).toBe('[::1]');
  });
});

describe('httpUrl', () => {
  it('builds http://host:port with IPv6 literals bracketed, parseable by URL', () => {
    expect(httpUrl('127.0.0.1', 8080)).toBe('http://127.0.0.1:8080');
    expect(httpUrl('::1', 8080)).toBe('http://[::1]:8080');
    expect(new URL(httpUrl('::1', 8080)).port).toBe('8080');
  });
});
