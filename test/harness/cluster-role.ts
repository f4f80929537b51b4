/**
 * Starts one `flotilla serve --role ROLE` process of a test cluster (real PostgreSQL and Redis
 * from the harness) and resolves with the "name url" lines it printed once it listens: `api`
 * for a coordinator, `proxy` and `proxy_api` for a proxy, `prober` for a prober.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { services } from './isolation.ts';
import { freePort } from './services.ts';

const REPO = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));

export interface ClusterOptions {
  databaseUrl: string;
  /** Redis key prefix shared by the cluster's processes. */
  prefix: string;
  /** Started processes are pushed here, for the caller's teardown. */
  children: ChildProcess[];
}

export async function startRole(
  cluster: ClusterOptions,
  role: string,
  extra: string[] = [],
): Promise<Record<string, string>> {
  const apiPort = await freePort();
  const proxyPort = await freePort();
  const child = spawn(
    process.execPath,
    [
      'bin/flotilla.js',
      'serve',
      '--role',
      role,
      '--api-port',
      String(apiPort),
      '--proxy-port',
      String(proxyPort),
      '--data-dir',
      mkdtempSync(join(tmpdir(), `flotilla-${role}-`)),
      '--model-root',
      REPO,
      '--health-interval',
      '0.5',
      '--redis-prefix',
      cluster.prefix,
      ...extra,
    ],
    {
      cwd: REPO,
      env: {
        ...process.env,
        DATABASE_URL: cluster.databaseUrl,
        REDIS_URL: services().redisUrl,
        FLOTILLA_API_TOKEN: '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  cluster.children.push(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const want =
    role === 'coordinator' ? ['api'] : role === 'proxy' ? ['proxy', 'proxy_api'] : ['prober'];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${role} did not start:\n${out}\n${err}`)),
      60_000,
    );
    child.stdout!.on('data', (d) => {
      out += d;
      const lines = Object.fromEntries(
        out
          .split('\n')
          .map((l) => l.split(' '))
          .filter((p) => p.length === 2)
          .map(([k, v]) => [k!, v!]),
      );
      if (want.every((w) => lines[w])) {
        clearTimeout(timer);
        resolve(lines);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${role} exited ${code}:\n${out}\n${err}`));
    });
  });
}
