/**
 * A prober in its own process, so a test can kill it with SIGKILL (no leave(), no goodbye).
 * Configured by environment: REDIS_URL, KEY_PREFIX, PROBER_ID, TARGETS (JSON ProbeTarget[]),
 * TTL_S, MEMBERSHIP_TTL_S. Prints one JSON line per event on stdout.
 */
import type { ProbeTarget } from '../../../src/health/prober.ts';
import { createProber } from '../../../src/health/prober.ts';
import { createRedisHealthStore } from '../../../src/health/redis-health-store.ts';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
};

const store = createRedisHealthStore({ url: env('REDIS_URL'), keyPrefix: env('KEY_PREFIX') });
const targets = JSON.parse(env('TARGETS')) as ProbeTarget[];
const prober = createProber({
  store,
  proberId: env('PROBER_ID'),
  targets: () => targets,
  ttlS: Number(env('TTL_S')),
  membershipTtlS: Number(env('MEMBERSHIP_TTL_S')),
});
prober.start();

let announced = false;
const timer = setInterval(() => {
  const s = prober.stats();
  if (!announced && s.owned > 0) {
    announced = true;
    console.log(JSON.stringify({ event: 'owning', owned: s.owned, members: s.members }));
  }
}, 20);

process.on('SIGTERM', () => {
  clearInterval(timer);
  void prober
    .stop()
    .then(() => store.close())
    .then(() => process.exit(0));
});
