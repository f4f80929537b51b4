/**
 * The suite's own PostgreSQL, Redis and etcd: the test harness's ephemeral servers
 * (test/harness/services.ts), local binaries on free ports in a temp dir, which a scenario may
 * stop and start again (same port, same data). The system servers on 5432/6379 are never touched.
 */
import {
  freePort,
  isAlive,
  type Restartable,
  spawnEtcd,
  spawnPostgres,
  spawnRedis,
  waitForExit,
} from '../../test/harness/services.ts';

export { freePort, isAlive };

/** Waits until `pid` is gone; false if it still runs after `ms`. */
export const waitGone = waitForExit;

export interface Service {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  /** Stops the server (clean, fast shutdown) and waits until it is gone. */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same data; resolves once it answers. */
  start(): Promise<void>;
  /** Stops it for good and deletes its data. */
  destroy(): Promise<void>;
}

/** Services started and not destroyed yet: `destroyAll()` stops them (an aborted run's cleanup). */
const live = new Set<Service>();

export async function destroyAllServices(): Promise<void> {
  await Promise.all([...live].map((s) => s.destroy().catch(() => {})));
}

/** The test harness's ephemeral server as a fault-suite service (tracked until destroyed). */
function service(name: string, r: Restartable): Service {
  const s: Service = {
    name,
    url: r.url,
    port: r.port,
    stop: r.halt,
    start: r.resume,
    destroy: async () => {
      live.delete(s);
      await r.stop();
    },
  };
  live.add(s);
  return s;
}

/**
 * PostgreSQL whose server log is kept in `logFile` (each line prefixed with the time in ms and
 * the application name; one line per statement when `logStatements` is set).
 */
export async function ownPostgres(
  opts: { logStatements?: boolean } = {},
): Promise<Service & { logFile: string }> {
  const r = await spawnPostgres({ log: true, logStatements: opts.logStatements ?? false });
  return Object.assign(service('postgres', r), { logFile: r.logFile ?? '' });
}

export async function ownRedis(): Promise<Service> {
  return service('redis', await spawnRedis());
}

export async function ownEtcd(): Promise<Service> {
  return service('etcd', await spawnEtcd());
}

/** A fresh database on `pg` for one scenario; its URL (with an application name, when given). */
export async function createDatabase(pgUrl: string, name: string): Promise<string> {
  const { default: pg } = await import('pg');
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(pgUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
