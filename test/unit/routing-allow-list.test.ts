import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPathAllowed } from '../../src/domain/routing.ts';
import { type InMemoryApi, START_TIMEOUT_MS, startInMemoryApi } from './api/in-memory-api.ts';

let api: InMemoryApi;
beforeAll(async () => {
  api = await startInMemoryApi();
}, START_TIMEOUT_MS);
afterAll(async () => {
  await api?.close();
});

describe('routing.allowed_path_prefixes', () => {
  it('travels from the deployment request into the routing table the proxies follow', async () => {
    await api.flotilla.deploy({
      name: 'listed',
      command: 'sleep 1000',
      replicas: 0,
      routing: { allowed_path_prefixes: ['/v1/'] },
    });
    const entry = api.flotilla.routingTable().deployments.find((d) => d.name === 'listed');
    expect(entry?.routing.allowed_path_prefixes).toEqual(['/v1/']);
  });

  it('lets every path through without a list, and only listed prefixes with one', () => {
    const base = { strategy: 'round_robin', request_timeout_s: 60, retries: 2 } as const;
    expect(isPathAllowed(base, '/admin/crash')).toBe(true);
    const listed = { ...base, allowed_path_prefixes: ['/v1/'] };
    expect(isPathAllowed(listed, '/v1/chat?q=%2F')).toBe(true);
    expect(isPathAllowed(listed, '/admin/crash')).toBe(false);
    expect(isPathAllowed(listed, '/v1/..%2Fadmin')).toBe(false);
    expect(isPathAllowed(listed, '/v1/..%5cadmin')).toBe(false);
  });
});
