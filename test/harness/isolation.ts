/**
 * Per-test isolation on shared real services: a PostgreSQL schema named after the test
 * (dropped only when the test passed, so a failure leaves its data to inspect), and
 * Redis/etcd key prefixes.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject, onTestFinished, type TestContext } from 'vitest';

export function services() {
  return inject('services');
}

function slug(name: string): string {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .slice(0, 40);
}

/** Database URL whose search_path is a fresh schema for this test. */
export async function isolatedDatabase(ctx: TestContext): Promise<{ url: string; schema: string }> {
  const base = services().databaseUrl;
  const schema = `t_${slug(ctx.task.name)}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE SCHEMA "${schema}"`);
  await admin.end();
  onTestFinished(async ({ task }) => {
    if (task.result?.state !== 'pass') {
      console.log(`[isolation] kept schema ${schema} of failed test "${task.name}"`);
      return;
    }
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    await c.query(`DROP SCHEMA "${schema}" CASCADE`);
    await c.end();
  });
  const url = new URL(base);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return { url: url.toString(), schema };
}

/** A key prefix unique to this test, for Redis and etcd. */
export function isolatedPrefix(ctx: TestContext): string {
  return `t:${slug(ctx.task.name)}:${randomBytes(3).toString('hex')}:`;
}

/** A fresh database on the test server (for processes that run migrations themselves); its URL. */
export async function createDatabase(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: services().databaseUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(services().databaseUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
