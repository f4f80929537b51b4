import type { Scenario } from '../lib/context.ts';

export const etcdLeader: Scenario = {
  name: 'etcd-leader',
  title: 'TODO',
  defaultRuns: { full: 1, quick: 1 },
  async run() {
    return [];
  },
};
