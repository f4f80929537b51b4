/**
 * Replica: one running session of a deployment's revision.
 *
 * Documented table (docs/state-machines.md, "Replica"):
 *   STARTING    -> HEALTHY      healthy_threshold consecutive health successes
 *   STARTING    -> UNHEALTHY    startup timeout, or the session failed (start error or exit)
 *   HEALTHY     -> UNHEALTHY    unhealthy_threshold consecutive failures, or the session exited
 *   UNHEALTHY   -> HEALTHY      healthy_threshold consecutive successes
 *   HEALTHY     -> TERMINATING  termination request or scale-down
 *   UNHEALTHY   -> TERMINATING  termination request, or failed recovery (regenerate)
 *   TERMINATING -> TERMINATED   session ended; forced after the termination timeout
 *
 * Decisions where the table is silent:
 * - In STARTING a failed probe is expected (the server is still loading) and does not leave
 *   STARTING; "health check failure" there means the session itself failed (start error or
 *   exit). The startup deadline bounds the wait.
 * - UNHEALTHY recovers in nested steps: wait a capped exponential backoff, restart the
 *   session once, observe it for the startup timeout; when it is still failing and the restart
 *   budget is spent, the replica terminates so the deployment regenerates it.
 * - A termination request is also accepted in STARTING (scale-down or delete while loading);
 *   it is the documented "termination request" edge, taken from the one state the table
 *   leaves out. Marked here as an addition.
 * - A session refused for lack of node capacity (error code `insufficient_resources`) is not a
 *   failure: the replica stays STARTING (substate `capacity`, reason `waiting for capacity:
 *   ...`) until the runtime sends `replica.capacity.freed` (a replica ended, capacity raised),
 *   re-checking on its own every CAPACITY_RECHECK_S. No restart is counted; no edge added.
 * - `replica.session.resumed` (the runtime restarted a session Flotilla itself stopped at
 *   shutdown) takes the new endpoint without a transition and without counting a restart.
 *
 * Every deadline is absolute (epoch ms) in context and served by the invoked deadline timer,
 * so it survives persist/restore (statelyai/xstate#5331).
 */
import { assign, fromPromise, sendParent, setup, stopChild } from 'xstate';
import { backoffDelayS } from './backoff.ts';
import { type MachineClock, unprovidedClock } from './clock.ts';
import { type DeadlineReachedEvent, deadlineTimer, deadlineTimerOn } from './deadline-timer.ts';
import { liveStates } from './states.ts';

export interface ReplicaHealthSettings {
  healthy_threshold: number;
  unhealthy_threshold: number;
  startup_timeout_s: number;
}

export interface ReplicaInput {
  replicaId: string;
  deploymentId: string;
  revisionId: string;
  health: ReplicaHealthSettings;
  /** Grace before the stop is forced, seconds. Default 30. */
  terminate_timeout_s?: number;
  /** Restart attempts before a failing replica is terminated for regeneration. Default 1. */
  max_restarts?: number;
  /** Crash-loop backoff: base and cap, seconds. Defaults 1 and 60. */
  backoff_base_s?: number;
  backoff_cap_s?: number;
  /**
   * Seconds to wait before the session starts (the deployment's crash-loop backoff); relative,
   * because the deployment does not read the clock: the replica turns it into `startNotBefore`.
   */
  start_delay_s?: number;
}

export const ReplicaStates = [
  'STARTING',
  'HEALTHY',
  'UNHEALTHY',
  'TERMINATING',
  'TERMINATED',
] as const;
export type ReplicaState = (typeof ReplicaStates)[number];

export interface ReplicaContext {
  replicaId: string;
  deploymentId: string;
  revisionId: string;
  health: ReplicaHealthSettings;
  terminateTimeoutS: number;
  maxRestarts: number;
  backoffBaseS: number;
  backoffCapS: number;
  endpoint: string | null;
  successes: number;
  failures: number;
  restarts: number;
  /** epoch ms; the deadline served in the current state, or null. */
  deadline: number | null;
  reason: string | null;
  /** Why the replica ended: 'scale-down', 'deleted', 'recovery-failed', ... */
  terminationCause: string | null;
  /** epoch ms before which the session is not started, or null. */
  startNotBefore: number | null;
  /** Seconds the start is delayed by (from input); 0 or absent: start at once. */
  startDelayS?: number;
  /** The session exited or could not be started at least once (a crash, not a timeout). */
  crashed?: boolean;
  /**
   * No session runs: it exited or could not be started, and no restart has brought one up yet.
   * A passed check then comes from before the exit (a late result) and cannot make it HEALTHY.
   */
  sessionDown?: boolean;
  /**
   * epoch ms: a session resumed after a planned shutdown is loading until its first passed
   * check or this deadline (the startup timeout); failed checks meanwhile are not counted.
   */
  resumeUntil?: number | null;
}

/** Reason prefix of a replica waiting for node capacity (the deployment view shows it). */
export const CAPACITY_WAIT_REASON = 'waiting for capacity';
/** Seconds between capacity re-checks of a waiting replica, besides the runtime's wake-ups. */
export const CAPACITY_RECHECK_S = 30;

export type ReplicaEvent =
  | { type: 'replica.health.passed'; detail?: string }
  | { type: 'replica.capacity.freed' }
  | { type: 'replica.session.resumed'; endpoint: string }
  | { type: 'replica.health.failed'; detail?: string }
  | { type: 'replica.session.exited'; detail?: string }
  | { type: 'replica.terminate'; cause: string }
  | DeadlineReachedEvent;

/** Sent to the parent deployment on every state change. */
export interface ReplicaStateEvent {
  type: 'replica.state';
  replicaId: string;
  state: ReplicaState;
  endpoint: string | null;
  reason: string | null;
  /** Why it is ending, once it is: 'scale-down', 'recovery-failed', ... */
  cause: string | null;
  /** Its session exited or failed to start at least once (the deployment's crash-loop limit). */
  crashed?: boolean;
}

export interface SessionInput {
  replicaId: string;
  deploymentId: string;
  revisionId: string;
}
export interface SessionStarted {
  endpoint: string;
}
export interface StopInput {
  replicaId: string;
  graceMs: number;
  force: boolean;
}

/** A typed placeholder for an effect the runtime provides; it fails if it is not provided. */
const noEffect = <TOutput, TInput>(name: string) =>
  fromPromise<TOutput, TInput>(async () => {
    throw new Error(`${name}: no implementation provided; the runtime supplies it`);
  });

/**
 * The replica's deadlines (epoch ms), each read from the one clock (./clock.ts). `setup` uses
 * them with `unprovidedClock`; `replicaMachineWithClock` provides them with a real one.
 */
const deadlines = (clock: MachineClock) => ({
  startup: ({ context }: { context: ReplicaContext }) =>
    clock.now() + context.health.startup_timeout_s * 1000,
  backoff: ({ context }: { context: ReplicaContext }) =>
    clock.now() +
    backoffDelayS(context.restarts, {
      backoff_base_s: context.backoffBaseS,
      backoff_cap_s: context.backoffCapS,
    }) *
      1000,
  terminate: ({ context }: { context: ReplicaContext }) =>
    clock.now() + context.terminateTimeoutS * 1000,
  /** The crash-loop delay chosen by the deployment, as an absolute time a restore keeps. */
  startNotBefore: ({ context }: { context: ReplicaContext }) =>
    clock.now() + (context.startDelayS ?? 0) * 1000,
  /** A resumed session loads until its first passed check or the startup timeout. */
  capacityRecheck: () => clock.now() + CAPACITY_RECHECK_S * 1000,
  resume: ({ context }: { context: ReplicaContext }) =>
    clock.now() + context.health.startup_timeout_s * 1000,
  isResuming: ({ context }: { context: ReplicaContext }) =>
    (context.resumeUntil ?? 0) > clock.now(),
});
const unprovided = deadlines(unprovidedClock);

export const replicaMachine = setup({
  types: {
    context: {} as ReplicaContext,
    events: {} as ReplicaEvent,
    input: {} as ReplicaInput,
  },
  actors: {
    deadlineTimer,
    /** Start (or adopt) the session of this replica. Idempotent per replicaId. */
    startSession: noEffect<SessionStarted, SessionInput>('startSession'),
    /** Restart the session in place (stop then start under the same replicaId). */
    restartSession: noEffect<SessionStarted, SessionInput>('restartSession'),
    /** Stop the session; resolves when it is gone. Idempotent. */
    stopSession: noEffect<void, StopInput>('stopSession'),
  },
  actions: {
    /** Persist the transition into `state` (runtime-provided). */
    recordTransition: (_, _params: { state: ReplicaState }) => {},
    notifyParent: sendParent(
      ({ context }, params: { state: ReplicaState }): ReplicaStateEvent => ({
        type: 'replica.state',
        replicaId: context.replicaId,
        state: params.state,
        endpoint: context.endpoint,
        reason: context.reason,
        cause: context.terminationCause,
        crashed: context.crashed ?? false,
      }),
    ),
    countSuccess: assign({
      successes: ({ context }) => context.successes + 1,
      failures: 0,
    }),
    countFailure: assign({
      failures: ({ context }) => context.failures + 1,
      successes: 0,
    }),
    resetCounts: assign({ successes: 0, failures: 0 }),
    // Time-dependent: provided with the clock (replicaMachineWithClock).
    setStartupDeadline: assign({ deadline: unprovided.startup }),
    setBackoffDeadline: assign({ deadline: unprovided.backoff }),
    setTerminateDeadline: assign({ deadline: unprovided.terminate }),
    setStartNotBefore: assign({ startNotBefore: unprovided.startNotBefore }),

    clearDeadline: assign({ deadline: null }),
    countRestart: assign({ restarts: ({ context }) => context.restarts + 1 }),
    takeResumedEndpoint: assign({
      endpoint: ({ context, event }) =>
        event.type === 'replica.session.resumed' ? event.endpoint : context.endpoint,
      failures: 0,
      sessionDown: false,
    }),
    setResumeDeadline: assign({ resumeUntil: unprovided.resume }),
    setCapacityRecheckDeadline: assign({ deadline: unprovided.capacityRecheck }),
    endResume: assign({ resumeUntil: null }),
  },
  guards: {
    isSessionDown: ({ context }) => context.sessionDown === true,
    isHealthyStreakReached: ({ context }) =>
      context.successes + 1 >= context.health.healthy_threshold,
    isUnhealthyStreakReached: ({ context }) =>
      context.failures + 1 >= context.health.unhealthy_threshold,
    isRestartBudgetLeft: ({ context }) => context.restarts < context.maxRestarts,
    isStartDelayed: ({ context }) => (context.startDelayS ?? 0) > 0,
    isCapacityShortage: ({ event }) =>
      (event as { error?: { code?: unknown } }).error?.code === 'insufficient_resources',
    // Time-dependent: provided with the clock (replicaMachineWithClock).
    isResuming: unprovided.isResuming,
  },
}).createMachine({
  id: 'replica',
  context: ({ input }) => ({
    replicaId: input.replicaId,
    deploymentId: input.deploymentId,
    revisionId: input.revisionId,
    health: input.health,
    terminateTimeoutS: input.terminate_timeout_s ?? 30,
    maxRestarts: input.max_restarts ?? 1,
    backoffBaseS: input.backoff_base_s ?? 1,
    backoffCapS: input.backoff_cap_s ?? 60,
    endpoint: null,
    successes: 0,
    failures: 0,
    restarts: 0,
    deadline: null,
    reason: null,
    terminationCause: null,
    startNotBefore: null,
    startDelayS: input.start_delay_s ?? 0,
  }),
  initial: 'STARTING',
  states: {
    STARTING: {
      entry: [
        { type: 'recordTransition', params: { state: 'STARTING' } },
        { type: 'notifyParent', params: { state: 'STARTING' } },
      ],
      initial: 'waiting',
      states: {
        waiting: {
          always: [{ guard: 'isStartDelayed', target: 'delayed' }, { target: 'launching' }],
        },
        /** Crash-loop backoff chosen by the deployment: the session starts at startNotBefore. */
        delayed: {
          entry: 'setStartNotBefore',
          invoke: {
            id: 'start-delay',
            src: 'deadlineTimer',
            input: ({ context }) => ({ deadline: context.startNotBefore ?? 0, key: 'start-delay' }),
          },
          on: { 'deadline.reached': { target: 'launching' } },
        },
        launching: {
          entry: 'setStartupDeadline',
          invoke: [
            {
              id: 'startup-deadline',
              src: 'deadlineTimer',
              input: ({ context }) => ({ deadline: context.deadline ?? 0, key: 'startup' }),
            },
            {
              id: 'start-session',
              src: 'startSession',
              input: ({ context }) => ({
                replicaId: context.replicaId,
                deploymentId: context.deploymentId,
                revisionId: context.revisionId,
              }),
              onDone: {
                actions: [
                  assign({ endpoint: ({ event }) => event.output.endpoint }),
                  { type: 'notifyParent', params: { state: 'STARTING' } },
                  // A finished child stays in the parent (and in every snapshot) until stopped
                  // (docs/xstate-rules.md rule 8): drop it, the state is unchanged.
                  stopChild('start-session'),
                ],
              },
              onError: [
                {
                  guard: 'isCapacityShortage',
                  target: 'capacity',
                  actions: assign({
                    reason: ({ event }) => `${CAPACITY_WAIT_REASON}: ${errorText(event.error)}`,
                  }),
                },
                {
                  target: '#replica.UNHEALTHY',
                  actions: assign({
                    reason: ({ event }) => `session failed to start: ${errorText(event.error)}`,
                    crashed: true,
                    sessionDown: true,
                  }),
                },
              ],
            },
          ],
        },
        /** Refused for node capacity: wait for a wake-up (or the re-check), then launch again. */
        capacity: {
          entry: [
            'setCapacityRecheckDeadline',
            { type: 'notifyParent', params: { state: 'STARTING' } },
          ],
          exit: assign({ reason: null }),
          invoke: {
            id: 'capacity-recheck',
            src: 'deadlineTimer',
            input: ({ context }) => ({ deadline: context.deadline ?? 0, key: 'capacity' }),
          },
          on: {
            'replica.capacity.freed': { target: 'launching' },
            'deadline.reached': { target: 'launching' },
            // No session runs while waiting; an exit report is about an earlier one.
            'replica.session.exited': {},
          },
        },
      },
      on: {
        'replica.health.passed': [
          {
            guard: 'isHealthyStreakReached',
            target: 'HEALTHY',
            actions: assign({ reason: null }),
          },
          { actions: 'countSuccess' },
        ],
        'replica.health.failed': { actions: 'countFailure' },
        'replica.session.exited': {
          target: 'UNHEALTHY',
          actions: assign({
            reason: ({ event }) => `session exited during startup${detail(event.detail)}`,
            crashed: true,
            sessionDown: true,
          }),
        },
        'deadline.reached': {
          target: 'UNHEALTHY',
          actions: assign({
            reason: ({ context }) =>
              `startup timeout: not healthy within ${context.health.startup_timeout_s} s`,
          }),
        },
        'replica.terminate': {
          target: 'TERMINATING',
          actions: assign({ terminationCause: ({ event }) => event.cause }),
        },
      },
    },
    HEALTHY: {
      entry: [
        'resetCounts',
        'clearDeadline',
        { type: 'recordTransition', params: { state: 'HEALTHY' } },
        { type: 'notifyParent', params: { state: 'HEALTHY' } },
      ],
      on: {
        'replica.health.passed': { actions: ['countSuccess', 'endResume'] },
        'replica.health.failed': [
          // A resumed session still loading: not a failure (see resumeUntil).
          { guard: 'isResuming' },
          {
            guard: 'isUnhealthyStreakReached',
            target: 'UNHEALTHY',
            actions: assign({
              reason: ({ context, event }) =>
                `${context.health.unhealthy_threshold} consecutive health check failures${detail(event.detail)}`,
            }),
          },
          { actions: 'countFailure' },
        ],
        'replica.session.exited': {
          target: 'UNHEALTHY',
          actions: assign({
            reason: ({ event }) => `session exited${detail(event.detail)}`,
            crashed: true,
            sessionDown: true,
          }),
        },
        'replica.session.resumed': {
          actions: [
            'takeResumedEndpoint',
            'setResumeDeadline',
            { type: 'notifyParent', params: { state: 'HEALTHY' } },
          ],
        },
        'replica.terminate': {
          target: 'TERMINATING',
          actions: assign({ terminationCause: ({ event }) => event.cause }),
        },
      },
    },
    UNHEALTHY: {
      entry: [
        'resetCounts',
        { type: 'recordTransition', params: { state: 'UNHEALTHY' } },
        { type: 'notifyParent', params: { state: 'UNHEALTHY' } },
      ],
      initial: 'backoff',
      on: {
        'replica.health.passed': [
          // A check that passed while no session runs was taken before the exit: ignored.
          { guard: 'isSessionDown' },
          {
            guard: 'isHealthyStreakReached',
            target: 'HEALTHY',
            actions: assign({ reason: null }),
          },
          { actions: 'countSuccess' },
        ],
        'replica.health.failed': { actions: 'countFailure' },
        'replica.session.resumed': {
          actions: [
            'takeResumedEndpoint',
            'setResumeDeadline',
            { type: 'notifyParent', params: { state: 'UNHEALTHY' } },
          ],
        },
        'replica.terminate': {
          target: 'TERMINATING',
          actions: assign({ terminationCause: ({ event }) => event.cause }),
        },
      },
      states: {
        /** Crash-loop backoff before the restart attempt. */
        backoff: {
          entry: 'setBackoffDeadline',
          invoke: {
            id: 'backoff-deadline',
            src: 'deadlineTimer',
            input: ({ context }) => ({ deadline: context.deadline ?? 0, key: 'backoff' }),
          },
          on: {
            'deadline.reached': [
              { guard: 'isRestartBudgetLeft', target: 'restarting' },
              {
                target: '#replica.TERMINATING',
                actions: assign({
                  terminationCause: 'recovery-failed',
                  reason: ({ context }) =>
                    `recovery failed after ${context.restarts} restart(s): ${context.reason ?? 'unhealthy'}`,
                }),
              },
            ],
          },
        },
        restarting: {
          entry: 'countRestart',
          invoke: {
            id: 'restart-session',
            src: 'restartSession',
            input: ({ context }) => ({
              replicaId: context.replicaId,
              deploymentId: context.deploymentId,
              revisionId: context.revisionId,
            }),
            onDone: {
              target: 'observing',
              actions: [
                assign({ endpoint: ({ event }) => event.output.endpoint, sessionDown: false }),
                { type: 'notifyParent', params: { state: 'UNHEALTHY' } },
              ],
            },
            onError: {
              target: 'backoff',
              actions: assign({
                reason: ({ event }) => `restart failed: ${errorText(event.error)}`,
              }),
            },
          },
        },
        /** After a restart: healthy within the startup timeout, or back to backoff. */
        observing: {
          entry: 'setStartupDeadline',
          invoke: {
            id: 'observe-deadline',
            src: 'deadlineTimer',
            input: ({ context }) => ({ deadline: context.deadline ?? 0, key: 'observe' }),
          },
          on: {
            'deadline.reached': { target: 'backoff' },
            'replica.session.exited': {
              target: 'backoff',
              actions: assign({
                reason: ({ event }) => `session exited after restart${detail(event.detail)}`,
                crashed: true,
                sessionDown: true,
              }),
            },
          },
        },
      },
    },
    TERMINATING: {
      entry: [
        'setTerminateDeadline',
        { type: 'recordTransition', params: { state: 'TERMINATING' } },
        { type: 'notifyParent', params: { state: 'TERMINATING' } },
      ],
      initial: 'graceful',
      states: {
        graceful: {
          invoke: [
            {
              id: 'stop-session',
              src: 'stopSession',
              input: ({ context }) => ({
                replicaId: context.replicaId,
                graceMs: context.terminateTimeoutS * 1000,
                force: false,
              }),
              onDone: { target: '#replica.TERMINATED' },
              // A failed stop is retried, forced, at the deadline.
              onError: {
                actions: assign({
                  reason: ({ event }) => `stop failed: ${errorText(event.error)}`,
                }),
              },
            },
            {
              id: 'terminate-deadline',
              src: 'deadlineTimer',
              input: ({ context }) => ({ deadline: context.deadline ?? 0, key: 'terminate' }),
            },
          ],
          on: { 'deadline.reached': { target: 'forcing' } },
        },
        /** "Force terminate after timeout": kill the session outright. */
        forcing: {
          invoke: {
            id: 'force-stop-session',
            src: 'stopSession',
            input: ({ context }) => ({ replicaId: context.replicaId, graceMs: 0, force: true }),
            onDone: {
              target: '#replica.TERMINATED',
              actions: assign({ reason: 'stop forced after timeout' }),
            },
            onError: {
              target: '#replica.TERMINATED',
              actions: assign({
                reason: ({ event }) => `forced stop failed: ${errorText(event.error)}`,
              }),
            },
          },
        },
      },
    },
    TERMINATED: {
      type: 'final',
      entry: [
        'clearDeadline',
        { type: 'recordTransition', params: { state: 'TERMINATED' } },
        { type: 'notifyParent', params: { state: 'TERMINATED' } },
      ],
    },
  },
});

function detail(d: string | undefined): string {
  return d ? `: ${d}` : '';
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The replica with its one clock (./clock.ts): deadlines are `clock.now()` + a duration and
 * its timers run on `clock`. Provide effects on the result (`.provide({...})` merges).
 */
export function replicaMachineWithClock(clock: MachineClock) {
  const at = deadlines(clock);
  return replicaMachine.provide({
    actions: {
      setStartupDeadline: assign({ deadline: at.startup }),
      setBackoffDeadline: assign({ deadline: at.backoff }),
      setTerminateDeadline: assign({ deadline: at.terminate }),
      setStartNotBefore: assign({ startNotBefore: at.startNotBefore }),
      setResumeDeadline: assign({ resumeUntil: at.resume }),
      setCapacityRecheckDeadline: assign({ deadline: at.capacityRecheck }),
    },
    guards: { isResuming: at.isResuming },
    actors: { deadlineTimer: deadlineTimerOn(clock) },
  });
}

/** Replica states an actor is alive in (all but the final TERMINATED), read from the machine. */
export const LIVE_REPLICA_STATES = liveStates(replicaMachine, ReplicaStates);
