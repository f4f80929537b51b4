import type { Scenario } from '../lib/context.ts';

export const postgresOutage: Scenario = {
  name: 'postgres-outage',
  title: 'TODO',
  defaultRuns: { full: 1, quick: 1 },
  async run() {
    return [];
  },
};
