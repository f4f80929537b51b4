/**
 * The route state names: the single definition. It is its own file, with no import at all,
 * because two layers need it: the route machine (machines/ may import only xstate and ./) and
 * the routing table in src/domain/routing.ts, which re-exports it. Domain is the bottom of the
 * dependency graph and machines/ may not import src/, so one of the two had to reach the
 * other; a dependency-free leaf file is the lesser evil against two copies kept equal by a test.
 */
export const RouteStates = [
  'PENDING',
  'PROVISIONING',
  'HEALTHY',
  'UNHEALTHY',
  'DEGRADED',
  'TERMINATING',
  'TERMINATED',
] as const;
export type RouteState = (typeof RouteStates)[number];
