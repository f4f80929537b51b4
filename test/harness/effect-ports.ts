/**
 * Effects for a coordinator tree built in a unit test (`provideEffects`): sessions start at a
 * fake endpoint at once, everything else does nothing, and a child error fails the test.
 */
import type { DeploymentInput } from '../../machines/deployment.ts';
import type { EffectPorts } from '../../src/runtime/provide-effects.ts';

export const testEffectPorts: EffectPorts = {
  prepareSession: async () => {},
  startSession: async (i) => ({ endpoint: `http://127.0.0.1:1/${i.replicaId}` }),
  restartSession: async (i) => ({ endpoint: `http://127.0.0.1:1/${i.replicaId}` }),
  stopSession: async () => {},
  drainRoute: async () => {},
  deploymentTransition() {},
  deploymentChanged() {},
  replicaTransition() {},
  routeTransition() {},
  publishRoutes() {},
  childError(where, event) {
    throw new Error(`unexpected child error in ${where}: ${JSON.stringify(event)}`);
  },
};

/** A deployment of `replicas` replicas named and identified by `id`. */
export const testDeploymentInput = (id: string, replicas = 2): DeploymentInput => ({
  deploymentId: id,
  name: id,
  revisionId: `${id}-v1`,
  replicas,
  min_replicas: 0,
  max_replicas: 5,
  settings: { health: { healthy_threshold: 1, unhealthy_threshold: 2, startup_timeout_s: 60 } },
});
