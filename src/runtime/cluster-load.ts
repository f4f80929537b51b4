/**
 * The coordinator's read of the load reports that proxies in other processes publish to Redis
 * (src/proxy/load-publisher.ts): every live proxy's latest report (a proxy whose key expired
 * is not live). The autoscaler sums them (src/scaling/load-windows.ts).
 */
import { Redis } from 'ioredis';
import { loadKey } from '../proxy/load-publisher.ts';
import { type LoadReport, parseLoadReport } from '../scaling/load-report.ts';

export interface ClusterLoad {
  /** The latest report of every live proxy. Throws when Redis does not answer. */
  reports(): Promise<LoadReport[]>;
  close(): Promise<void>;
}

/** `*?[]\` are glob characters in SCAN MATCH. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

export function createClusterLoad(opts: { url: string; keyPrefix: string }): ClusterLoad {
  const redis = new Redis(opts.url, {
    maxRetriesPerRequest: 2,
    connectionName: 'flotilla-load-reader',
  });
  // Errors surface on the commands (the autoscaler reports a missing metric); it reconnects.
  redis.on('error', () => {});
  const match = `${globEscape(loadKey(opts.keyPrefix, ''))}*`;
  return {
    async reports() {
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0');
      if (keys.length === 0) return [];
      const texts = await redis.mget(...keys);
      return texts.flatMap((t) => {
        const r = t === null ? null : parseLoadReport(t);
        return r ? [r] : [];
      });
    },
    async close() {
      redis.disconnect();
    },
  };
}
