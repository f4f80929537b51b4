import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, parseClientConfig } from '../../src/cli/client-config.ts';
import { run as serve } from '../../src/cli/commands/serve.ts';
import {
  describeServeConfig,
  isLoopback,
  parseServeConfig,
} from '../../src/cli/commands/serve-config.ts';
import { defaultProxyWorkers } from '../../src/proxy/workers.ts';

afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.lines;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('serve configuration', () => {
  it('defaults --proxy-workers to the cores minus one, at least one, and validates it', () => {
    expect(defaultProxyWorkers(1)).toBe(1);
    expect(defaultProxyWorkers(2)).toBe(1);
    expect(defaultProxyWorkers(16)).toBe(15);
    expect(parseServeConfig({ 'proxy-workers': '3' }, {}, '/srv/app').proxyWorkers).toBe(3);
    expect(parseServeConfig({}, { FLOTILLA_PROXY_WORKERS: '2' }, '/srv/app').proxyWorkers).toBe(2);
    expect(() => parseServeConfig({ 'proxy-workers': '0' }, {}, '/srv/app')).toThrow(
      /--proxy-workers/,
    );
  });

  it('a proxy node runs one process unless --proxy-workers says otherwise', () => {
    const env = { REDIS_URL: 'redis://127.0.0.1:6379' };
    expect(parseServeConfig({ role: 'proxy' }, env, '/srv/app').proxyWorkers).toBe(1);
    expect(
      parseServeConfig({ role: 'proxy', 'proxy-workers': '3' }, env, '/srv/app').proxyWorkers,
    ).toBe(3);
    expect(
      parseServeConfig({ role: 'proxy' }, { ...env, FLOTILLA_PROXY_WORKERS: '2' }, '/srv/app')
        .proxyWorkers,
    ).toBe(2);
  });

  it('has the documented defaults with an empty environment', () => {
    const c = parseServeConfig({}, {}, '/srv/app');
    expect(c).toEqual({
      databaseUrl: undefined,
      redisUrl: undefined,
      redisPrefix: 'flotilla:',
      etcdEndpoints: undefined,
      apiPort: 8080,
      proxyPort: 8000,
      // Cores minus one for the rest of serve, at least one (README "Proxy workers").
      proxyWorkers: defaultProxyWorkers(),
      host: '127.0.0.1',
      dataDir: '/srv/app/.flotilla',
      apiToken: undefined,
      modelRoots: ['/srv/app'],
      keepReplicas: false,
      healthIntervalS: 5,
      evictionIntervalS: 60,
      scalingIntervalS: 2,
      dataPlane: 'own',
      role: 'all',
      logLevel: 'info',
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('takes --data-plane haproxy (or FLOTILLA_DATA_PLANE) and names the field when it is neither', () => {
    expect(parseServeConfig({ 'data-plane': 'haproxy' }, {}, '/srv').dataPlane).toBe('haproxy');
    expect(parseServeConfig({}, { FLOTILLA_DATA_PLANE: 'haproxy' }, '/srv').dataPlane).toBe(
      'haproxy',
    );
    expect(() => parseServeConfig({ 'data-plane': 'envoy' }, {}, '/srv')).toThrow(
      /--data-plane \/ FLOTILLA_DATA_PLANE: .*got "envoy"/,
    );
  });

  it('reads every documented environment variable', () => {
    const c = parseServeConfig(
      {},
      {
        DATABASE_URL: 'postgres://u:p@db:5432/flotilla',
        REDIS_URL: 'redis://cache:6379',
        ETCD_ENDPOINTS: 'http://e1:2379, http://e2:2379',
        FLOTILLA_API_PORT: '9090',
        FLOTILLA_PROXY_PORT: '9000',
        FLOTILLA_HOST: '0.0.0.0',
        FLOTILLA_DATA_DIR: '/var/lib/flotilla',
        FLOTILLA_API_TOKEN: 'tok',
      },
      '/srv',
    );
    expect(c).toMatchObject({
      databaseUrl: 'postgres://u:p@db:5432/flotilla',
      redisUrl: 'redis://cache:6379',
      etcdEndpoints: ['http://e1:2379', 'http://e2:2379'],
      apiPort: 9090,
      proxyPort: 9000,
      host: '0.0.0.0',
      dataDir: '/var/lib/flotilla',
      apiToken: 'tok',
    });
  });

  it('lets flags win over the environment', () => {
    const c = parseServeConfig(
      {
        'api-port': '7000',
        host: '127.0.0.2',
        'model-root': ['models', '/abs'],
        'keep-replicas': true,
      },
      { FLOTILLA_API_PORT: '9090', FLOTILLA_HOST: '0.0.0.0' },
      '/srv',
    );
    expect(c.apiPort).toBe(7000);
    expect(c.host).toBe('127.0.0.2');
    expect(c.modelRoots).toEqual(['/srv/models', '/abs']);
    expect(c.keepReplicas).toBe(true);
  });

  it('names the flag and the variable of every bad value', () => {
    expect(
      problems(() =>
        parseServeConfig(
          { 'api-port': 'eighty', 'health-interval': '-1' },
          { REDIS_URL: 'http://not-redis', FLOTILLA_ROLE: 'leader' },
        ),
      ),
    ).toEqual([
      expect.stringMatching(
        /^--redis-url \/ REDIS_URL: expected a redis:\/\/ or rediss:\/\/ URL, got "http:\/\/not-redis"$/,
      ),
      expect.stringMatching(/^--api-port \/ FLOTILLA_API_PORT: .*got "eighty"$/),
      expect.stringMatching(/^--health-interval \/ HEALTH_CHECK_INTERVAL_SEC: .*got "-1"$/),
      expect.stringMatching(/^--role \/ FLOTILLA_ROLE: .*got "leader"$/),
    ]);
  });

  it('refuses a non-loopback host without a token, in one line', () => {
    expect(problems(() => parseServeConfig({ host: '0.0.0.0' }, {}))).toEqual([
      'refusing to listen on 0.0.0.0 without an API token: set FLOTILLA_API_TOKEN or --api-token (or use --host 127.0.0.1)',
    ]);
    expect(parseServeConfig({ host: '0.0.0.0', 'api-token': 't' }, {}).host).toBe('0.0.0.0');
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1'])
      expect(isLoopback(h)).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1']) expect(isLoopback(h)).toBe(false);
  });

  it('flotilla serve --host 0.0.0.0 without a token exits 2 with that line', async () => {
    vi.stubEnv('FLOTILLA_API_TOKEN', '');
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    expect(await serve(['--host', '0.0.0.0'])).toBe(2);
    expect(err.mock.calls.map((c) => c[0])).toEqual([
      'flotilla serve: refusing to listen on 0.0.0.0 without an API token: set FLOTILLA_API_TOKEN or --api-token (or use --host 127.0.0.1)',
    ]);
  });

  it('flotilla serve --role proxy without REDIS_URL says it needs it and exits 2', async () => {
    vi.stubEnv('REDIS_URL', '');
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    expect(await serve(['--role', 'proxy'])).toBe(2);
    expect(err.mock.calls[0]?.[0]).toBe(
      'flotilla serve: --role proxy needs REDIS_URL: it follows the routing table the coordinator publishes there',
    );
  });

  it('flotilla serve --role coordinator without DATABASE_URL and REDIS_URL says so and exits 2', async () => {
    vi.stubEnv('REDIS_URL', '');
    vi.stubEnv('DATABASE_URL', '');
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    expect(await serve(['--role', 'coordinator'])).toBe(2);
    expect(err.mock.calls[0]?.[0]).toMatch(/--role coordinator needs DATABASE_URL and REDIS_URL/);
  });

  it('hides the token and URL passwords when the configuration is logged', () => {
    const c = parseServeConfig(
      { 'api-token': 'sekrit', 'database-url': 'postgres://u:hunter2@db/f' },
      {},
    );
    const shown = JSON.stringify(describeServeConfig(c));
    expect(shown).not.toContain('sekrit');
    expect(shown).not.toContain('hunter2');
    expect(describeServeConfig(parseServeConfig({}, {})).databaseUrl).toBe('embedded');
  });
});

describe('client configuration', () => {
  it('defaults to the local API and strips a trailing slash', () => {
    expect(parseClientConfig({}, {})).toEqual({ api: 'http://127.0.0.1:8080', token: undefined });
    expect(parseClientConfig({ api: 'http://h:1/' }, { FLOTILLA_API_URL: 'http://x:2' }).api).toBe(
      'http://h:1',
    );
    expect(
      parseClientConfig({}, { FLOTILLA_API_URL: 'http://x:2', FLOTILLA_API_TOKEN: 't' }),
    ).toEqual({
      api: 'http://x:2',
      token: 't',
    });
  });

  it('rejects an API address that is not an http URL', () => {
    expect(problems(() => parseClientConfig({ api: 'localhost:8080' }, {}))[0]).toMatch(
      /^--api \/ FLOTILLA_API_URL/,
    );
  });
});
