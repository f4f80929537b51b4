/**
 * Route: the traffic path to one replica.
 *
 * Documented table (docs/state-machines.md, "Route"):
 *   PENDING      -> PROVISIONING  route creation started (the replica's session has an endpoint)
 *   PROVISIONING -> HEALTHY       session ready and health check passes
 *   HEALTHY      -> HEALTHY       readiness passes, data fresh (stays; last health updated)
 *   HEALTHY      -> UNHEALTHY     readiness fails
 *   HEALTHY      -> DEGRADED      health data stale or missing
 *   UNHEALTHY    -> HEALTHY       readiness passes again
 *   UNHEALTHY    -> DEGRADED      health data stale or missing
 *   UNHEALTHY    -> TERMINATING   status in the scaling group's route_cleanup_target_statuses
 *   DEGRADED     -> HEALTHY       data refreshed and readiness passes
 *   DEGRADED     -> UNHEALTHY     data refreshed but readiness fails
 *   DEGRADED     -> TERMINATING   status in route_cleanup_target_statuses
 *   *            -> TERMINATING   deployment termination or manual deletion (route.terminate)
 *   TERMINATING  -> TERMINATED    in-flight requests drained (or the drain timeout passed)
 *
 * Eviction (`route.evict`) carries the scaling group's current cleanup statuses, so a changed
 * group applies without a restart. "healthy" is a valid cleanup status; a HEALTHY route it
 * matches takes the `* -> TERMINATING` edge. PROVISIONING ignores health classes other than
 * HEALTHY: a replica that never becomes healthy is handled by its startup timeout.
 */
import { assign, fromPromise, sendParent, setup } from 'xstate';
import { type MachineClock, unprovidedClock } from './clock.ts';
import { type DeadlineReachedEvent, deadlineTimer, deadlineTimerOn } from './deadline-timer.ts';
import { type RouteState, RouteStates } from './route-states.ts';
import { liveStates } from './states.ts';

export { type RouteState, RouteStates } from './route-states.ts';

export type CleanupStatus = 'healthy' | 'unhealthy' | 'degraded';

export interface RouteInput {
  routeId: string;
  replicaId: string;
  deploymentId: string;
  weight?: number;
  /** Drain timeout, seconds. Default 30. */
  drain_timeout_s?: number;
}

export interface LastHealth {
  class: 'HEALTHY' | 'UNHEALTHY' | 'DEGRADED';
  reason: string;
  /** epoch ms of the check (or of the classification when there was no data) */
  at: number;
}

export interface RouteContext {
  routeId: string;
  replicaId: string;
  deploymentId: string;
  weight: number;
  drainTimeoutS: number;
  lastHealth: LastHealth | null;
  reason: string | null;
  deadline: number | null;
}

export interface HealthEventBody {
  reason: string;
  at: number;
}

export type RouteEvent =
  | { type: 'route.provision' }
  | ({ type: 'route.health.healthy' } & HealthEventBody)
  | ({ type: 'route.health.unhealthy' } & HealthEventBody)
  | ({ type: 'route.health.degraded' } & HealthEventBody)
  | { type: 'route.evict'; statuses: readonly CleanupStatus[] }
  | { type: 'route.terminate'; cause: string }
  | DeadlineReachedEvent;

/** Sent to the parent deployment on every state change. */
export interface RouteStateEvent {
  type: 'route.state';
  routeId: string;
  replicaId: string;
  state: RouteState;
}

export interface DrainInput {
  routeId: string;
}

/** When a TERMINATING route stops draining (epoch ms), read from the one clock (./clock.ts). */
const drainDeadline =
  (clock: MachineClock) =>
  ({ context }: { context: RouteContext }) =>
    clock.now() + context.drainTimeoutS * 1000;

export const routeMachine = setup({
  types: {
    context: {} as RouteContext,
    events: {} as RouteEvent,
    input: {} as RouteInput,
  },
  actors: {
    deadlineTimer,
    /** Resolves when the route has no in-flight requests (runtime-provided, from the proxy). */
    drainRoute: fromPromise<void, DrainInput>(async () => {
      throw new Error('drainRoute: no implementation provided; the runtime supplies it');
    }),
  },
  actions: {
    /** Persist the transition into `state` (runtime-provided). */
    recordTransition: (_, _params: { state: RouteState }) => {},
    /** Republish the routing table (runtime-provided; a full replace, so idempotent). */
    publishRoutes: () => {},
    notifyParent: sendParent(
      ({ context }, params: { state: RouteState }): RouteStateEvent => ({
        type: 'route.state',
        routeId: context.routeId,
        replicaId: context.replicaId,
        state: params.state,
      }),
    ),
    recordHealth: assign({
      lastHealth: ({ event }) => {
        if (
          event.type === 'route.health.healthy' ||
          event.type === 'route.health.unhealthy' ||
          event.type === 'route.health.degraded'
        ) {
          const cls = event.type.slice('route.health.'.length).toUpperCase() as LastHealth['class'];
          return { class: cls, reason: event.reason, at: event.at };
        }
        return null;
      },
    }),
    markTerminating: assign({
      reason: ({ event }) => {
        if (event.type === 'route.terminate') return event.cause;
        if (event.type === 'route.evict')
          return 'evicted: status matches the cleanup target statuses';
        return 'terminated';
      },
    }),
    /** Time-dependent: provided with the clock (routeMachineWithClock). */
    setDrainDeadline: assign({ deadline: drainDeadline(unprovidedClock) }),
    clearDeadline: assign({ deadline: null }),
  },
  guards: {
    isCleanupTarget: ({ event }, params: { status: CleanupStatus }) =>
      event.type === 'route.evict' && event.statuses.includes(params.status),
  },
}).createMachine({
  id: 'route',
  context: ({ input }) => ({
    routeId: input.routeId,
    replicaId: input.replicaId,
    deploymentId: input.deploymentId,
    weight: input.weight ?? 1,
    drainTimeoutS: input.drain_timeout_s ?? 30,
    lastHealth: null,
    reason: null,
    deadline: null,
  }),
  initial: 'PENDING',
  on: {
    // "* -> TERMINATING": every non-terminal state; TERMINATING and TERMINATED override below.
    'route.terminate': { target: '.TERMINATING', actions: 'markTerminating' },
  },
  states: {
    PENDING: {
      entry: [
        { type: 'recordTransition', params: { state: 'PENDING' } },
        { type: 'notifyParent', params: { state: 'PENDING' } },
      ],
      on: { 'route.provision': { target: 'PROVISIONING' } },
    },
    PROVISIONING: {
      entry: [
        { type: 'recordTransition', params: { state: 'PROVISIONING' } },
        { type: 'notifyParent', params: { state: 'PROVISIONING' } },
      ],
      on: {
        'route.health.healthy': { target: 'HEALTHY', actions: 'recordHealth' },
        'route.health.unhealthy': { actions: 'recordHealth' },
        'route.health.degraded': { actions: 'recordHealth' },
      },
    },
    HEALTHY: {
      entry: [
        { type: 'recordTransition', params: { state: 'HEALTHY' } },
        { type: 'notifyParent', params: { state: 'HEALTHY' } },
        'publishRoutes',
      ],
      on: {
        'route.health.healthy': { actions: 'recordHealth' },
        'route.health.unhealthy': { target: 'UNHEALTHY', actions: 'recordHealth' },
        'route.health.degraded': { target: 'DEGRADED', actions: 'recordHealth' },
        'route.evict': {
          guard: { type: 'isCleanupTarget', params: { status: 'healthy' } },
          target: 'TERMINATING',
          actions: 'markTerminating',
        },
      },
    },
    UNHEALTHY: {
      entry: [
        { type: 'recordTransition', params: { state: 'UNHEALTHY' } },
        { type: 'notifyParent', params: { state: 'UNHEALTHY' } },
        'publishRoutes',
      ],
      on: {
        'route.health.healthy': { target: 'HEALTHY', actions: 'recordHealth' },
        'route.health.unhealthy': { actions: 'recordHealth' },
        'route.health.degraded': { target: 'DEGRADED', actions: 'recordHealth' },
        'route.evict': {
          guard: { type: 'isCleanupTarget', params: { status: 'unhealthy' } },
          target: 'TERMINATING',
          actions: 'markTerminating',
        },
      },
    },
    DEGRADED: {
      entry: [
        { type: 'recordTransition', params: { state: 'DEGRADED' } },
        { type: 'notifyParent', params: { state: 'DEGRADED' } },
        'publishRoutes',
      ],
      on: {
        'route.health.healthy': { target: 'HEALTHY', actions: 'recordHealth' },
        'route.health.unhealthy': { target: 'UNHEALTHY', actions: 'recordHealth' },
        'route.health.degraded': { actions: 'recordHealth' },
        'route.evict': {
          guard: { type: 'isCleanupTarget', params: { status: 'degraded' } },
          target: 'TERMINATING',
          actions: 'markTerminating',
        },
      },
    },
    TERMINATING: {
      entry: [
        'setDrainDeadline',
        { type: 'recordTransition', params: { state: 'TERMINATING' } },
        { type: 'notifyParent', params: { state: 'TERMINATING' } },
        'publishRoutes',
      ],
      invoke: [
        {
          id: 'drain',
          src: 'drainRoute',
          input: ({ context }) => ({ routeId: context.routeId }),
          onDone: { target: 'TERMINATED' },
          onError: { target: 'TERMINATED', actions: assign({ reason: 'drain failed' }) },
        },
        {
          id: 'drain-deadline',
          src: 'deadlineTimer',
          input: ({ context }) => ({ deadline: context.deadline ?? 0, key: 'drain' }),
        },
      ],
      on: {
        'route.terminate': {},
        'deadline.reached': {
          target: 'TERMINATED',
          actions: assign({
            reason: ({ context }) => `drain timeout after ${context.drainTimeoutS} s`,
          }),
        },
      },
    },
    TERMINATED: {
      type: 'final',
      entry: [
        'clearDeadline',
        { type: 'recordTransition', params: { state: 'TERMINATED' } },
        { type: 'notifyParent', params: { state: 'TERMINATED' } },
        'publishRoutes',
      ],
    },
  },
});

/** The route with its one clock (./clock.ts). Provide effects on the result. */
export function routeMachineWithClock(clock: MachineClock) {
  return routeMachine.provide({
    actions: {
      setDrainDeadline: assign({ deadline: drainDeadline(clock) }),
    },
    actors: { deadlineTimer: deadlineTimerOn(clock) },
  });
}

/** Route states an actor is alive in (all but the final TERMINATED), read from the machine. */
export const LIVE_ROUTE_STATES = liveStates(routeMachine, RouteStates);
