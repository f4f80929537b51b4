import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { isolatedDatabase, isolatedPrefix, services } from '../harness/isolation.ts';

describe('test services', () => {
  it('PostgreSQL answers a write and a read in an isolated schema', async (ctx) => {
    const { url, schema } = await isolatedDatabase(ctx);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query('CREATE TABLE probe (k text PRIMARY KEY, v text NOT NULL)');
      await client.query('INSERT INTO probe VALUES ($1, $2)', ['a', 'written']);
      const { rows } = await client.query(
        'SELECT v, current_schema() AS s FROM probe WHERE k = $1',
        ['a'],
      );
      expect(rows).toEqual([{ v: 'written', s: schema }]);
    } finally {
      await client.end();
    }
  });

  it('Redis answers a write and a read under a test prefix', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    const redis = new Redis(services().redisUrl, { keyPrefix: prefix, lazyConnect: true });
    await redis.connect();
    try {
      await redis.set('probe', 'written', 'EX', 60);
      expect(await redis.get('probe')).toBe('written');
      const raw = new Redis(services().redisUrl);
      expect(await raw.get(`${prefix}probe`)).toBe('written');
      raw.disconnect();
    } finally {
      redis.disconnect();
    }
  });

  it('etcd answers a write and a read under a test prefix', async (ctx) => {
    const prefix = isolatedPrefix(ctx);
    const etcd = new Etcd3({ hosts: services().etcdEndpoints.split(',') });
    try {
      await etcd.put(`${prefix}probe`).value('written');
      expect(await etcd.get(`${prefix}probe`).string()).toBe('written');
      await etcd.delete().prefix(prefix);
    } finally {
      etcd.close();
    }
  });
});
