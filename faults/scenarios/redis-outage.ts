import type { Scenario } from '../lib/context.ts';

export const redisOutage: Scenario = {
  name: 'redis-outage',
  title: 'TODO',
  defaultRuns: { full: 1, quick: 1 },
  async run() {
    return [];
  },
};
