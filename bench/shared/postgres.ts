/** What every bench needs from PostgreSQL: a schema of its own, dropped afterwards; heap figures. */
import pg from 'pg';

export const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/** Present when node runs with --expose-gc. */
export const gc = (globalThis as { gc?: () => void }).gc;

/** Heap in MiB after two full collections (run with --expose-gc for a stable figure). */
export function heapMb(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

/** Runs `fn` with a URL whose search_path is a fresh schema `name`, dropped afterwards. */
export async function withSchema<T>(name: string, fn: (url: string) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS ${name} CASCADE; CREATE SCHEMA ${name}`);
  const url = new URL(baseUrl);
  url.searchParams.set('options', `-c search_path=${name}`);
  try {
    return await fn(url.toString());
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
    await admin.end();
  }
}
