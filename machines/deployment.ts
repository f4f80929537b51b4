/**
 * Deployment: one declared model service and its replicas and routes (spawned children).
 *
 * Documented table (docs/state-machines.md, "Deployment"):
 *   PENDING      -> PROVISIONING  initial replica creation started (definition generated)
 *   PENDING      -> ERROR         definition generator failure
 *   PROVISIONING -> RUNNING       minimum replica count achieved (at least one HEALTHY replica)
 *   PROVISIONING -> PENDING       retry: no replica became HEALTHY within the provisioning timeout
 *   RUNNING      -> DESTROYING    delete request
 *   DESTROYING   -> TERMINATED    all replicas (and routes) terminated
 *
 * Additions, so an operator can remove a stuck deployment:
 *   PENDING | PROVISIONING | ERROR -> DESTROYING   delete request
 * Additions (issue 12, "crash loops end"):
 *   PROVISIONING -> ERROR     max_failed_starts replicas in a row failed to start and recover
 *                             (provisioning retries count too); the reason quotes the last one
 *   PENDING      -> ERROR     (documented edge) the same limit reached by provisioning retries
 *   ERROR        -> PENDING   update (PATCH, a new revision): retry from the start
 *
 * A deployment whose target is 0 replicas reaches RUNNING with nothing to serve (the
 * documented PROVISIONING -> RUNNING edge; "at least one HEALTHY" is min(minimum, target)).
 * Replicas waiting for node capacity do not make the provisioning timeout a failed attempt:
 * PROVISIONING is re-entered (a self-edge) and waits another period.
 * An update is accepted in PENDING, PROVISIONING, RUNNING and ERROR, so the stored revision
 * and the actor's never disagree; DESTROYING refuses it (the runtime answers 409).
 *
 * Rules: the replica count may change in RUNNING (and is accepted in PENDING/PROVISIONING);
 * no replica is created once DESTROYING has started. A replica leaves by draining its route
 * first (route TERMINATING -> TERMINATED), then stopping its session. Terminated children are
 * stopped and dropped from context (docs/xstate-rules.md rule 8). Replica ids are derived from the
 * deployment id and a sequence kept in context, so a replay after a crash re-creates the same
 * ids and the backend adopts the running sessions instead of starting duplicates.
 */
import { assign, enqueueActions, fromPromise, setup } from 'xstate';
import { backoffDelayS } from './backoff.ts';
import { type MachineClock, unprovidedClock } from './clock.ts';
import { type DeadlineReachedEvent, deadlineTimer, deadlineTimerOn } from './deadline-timer.ts';
import {
  CAPACITY_WAIT_REASON,
  type ReplicaHealthSettings,
  type ReplicaState,
  type ReplicaStateEvent,
  replicaMachine,
  replicaMachineWithClock,
} from './replica.ts';
import {
  type CleanupStatus,
  type RouteState,
  type RouteStateEvent,
  routeMachine,
  routeMachineWithClock,
} from './route.ts';
import { liveStates } from './states.ts';

export const DeploymentStates = [
  'PENDING',
  'PROVISIONING',
  'RUNNING',
  'DESTROYING',
  'TERMINATED',
  'ERROR',
] as const;
export type DeploymentState = (typeof DeploymentStates)[number];

export interface DeploymentSettings {
  health: ReplicaHealthSettings;
  /** Seconds a replica gets to stop before it is killed. */
  terminate_timeout_s: number;
  /** Seconds a route drains in-flight requests. */
  drain_timeout_s: number;
  /** Restart attempts per unhealthy replica before regeneration. */
  max_restarts: number;
  backoff_base_s: number;
  backoff_cap_s: number;
  /** Seconds PROVISIONING waits for a HEALTHY replica before retrying from PENDING. */
  provision_timeout_s: number;
  /**
   * Failed starts in a row before the deployment goes to ERROR: replicas whose session crashed
   * (exited, or could not be started) and that then failed recovery, with no HEALTHY replica
   * between them, plus PROVISIONING -> PENDING retries. A slow start (startup timeout) alone
   * is left to the provisioning timeout.
   */
  max_failed_starts: number;
}

export const DEFAULT_DEPLOYMENT_SETTINGS: DeploymentSettings = {
  health: { healthy_threshold: 1, unhealthy_threshold: 3, startup_timeout_s: 300 },
  terminate_timeout_s: 30,
  drain_timeout_s: 30,
  max_restarts: 1,
  backoff_base_s: 1,
  backoff_cap_s: 60,
  provision_timeout_s: 900,
  max_failed_starts: 3,
};

export interface DeploymentInput {
  deploymentId: string;
  name: string;
  revisionId: string;
  replicas: number;
  min_replicas: number;
  max_replicas: number;
  settings?: Partial<DeploymentSettings>;
}

export interface ReplicaEntry {
  revisionId: string;
  state: ReplicaState;
  routeId: string;
  routeState: RouteState | 'GONE';
  endpoint: string | null;
  /** Leaving: its route is draining or it was chosen for removal; not counted as live. */
  leaving: boolean;
  /** The replica actor finished and was stopped. */
  gone?: boolean;
  /** The replica is waiting for node capacity (not a failure; see replica.ts). */
  waitingForCapacity?: boolean;
  seq: number;
}

export interface DeploymentContext {
  deploymentId: string;
  name: string;
  revisionId: string;
  target: number;
  minReplicas: number;
  maxReplicas: number;
  settings: DeploymentSettings;
  seq: number;
  replicas: Record<string, ReplicaEntry>;
  retries: number;
  /** Replicas in a row that ended in failed recovery; new ones start after a backoff. */
  crashLoops: number;
  deadline: number | null;
  reason: string | null;
  /** The reason of the last replica that failed recovery (quoted when the crash loop ends). */
  lastFailure?: string | null;
  /** Replicas in a row whose session crashed (exit or start error) and failed recovery. */
  failedStarts?: number;
  /**
   * The last scale request's preferred removal order (e.g. the autoscaler's least busy replica
   * first); used after the state rank in {@link planReplicas}.
   */
  removalPreference?: string[];
}

/** Delay before a new replica starts after `crashLoops` failed ones (./backoff.ts; 0 if none). */
export function crashLoopDelayS(
  crashLoops: number,
  s: Pick<DeploymentSettings, 'backoff_base_s' | 'backoff_cap_s'>,
): number {
  if (crashLoops <= 0) return 0;
  return backoffDelayS(crashLoops - 1, s);
}

export type DeploymentEvent =
  | { type: 'deployment.scale'; replicas: number; removalOrder?: readonly string[] }
  | {
      type: 'deployment.update';
      revisionId: string;
      settings?: Partial<DeploymentSettings>;
    }
  | { type: 'deployment.delete' }
  | { type: 'deployment.configure'; min_replicas: number; max_replicas: number }
  | { type: 'deployment.evict'; statuses: readonly CleanupStatus[] }
  | ReplicaStateEvent
  | RouteStateEvent
  | DeadlineReachedEvent;

export interface GenerateInput {
  deploymentId: string;
  revisionId: string;
}

export const replicaActorId = (replicaId: string) => `replica:${replicaId}`;
export const routeActorId = (routeId: string) => `route:${routeId}`;
export const deploymentActorId = (deploymentId: string) => `deployment:${deploymentId}`;
/** The replica id inside a replica actor id (the inverse of replicaActorId). */
export const replicaIdOf = (actorId: string) => actorId.replace(/^replica:/, '');

/** A replica counts toward the target while it is neither leaving nor ending. */
export function isLive(r: ReplicaEntry): boolean {
  return !r.leaving && r.state !== 'TERMINATING' && r.state !== 'TERMINATED';
}

export interface ReplicaPlan {
  spawn: number;
  terminate: string[];
}

/**
 * What to create and remove to reach the target: pure, so tests can check it alone.
 * With replicas of an older revision present it rolls: one new replica at a time, and an old
 * one leaves only once a new one is HEALTHY, so the HEALTHY count never drops.
 */
export function planReplicas(
  ctx: Pick<DeploymentContext, 'replicas' | 'revisionId' | 'target' | 'removalPreference'>,
): ReplicaPlan {
  const live = Object.entries(ctx.replicas).filter(([, r]) => isLive(r));
  const current = live.filter(([, r]) => r.revisionId === ctx.revisionId);
  const old = live.filter(([, r]) => r.revisionId !== ctx.revisionId);
  const preferred = ctx.removalPreference ?? [];
  const place = (id: string) => {
    const i = preferred.indexOf(id);
    return i < 0 ? preferred.length : i;
  };
  const removalOrder = (list: typeof live) =>
    [...list]
      .sort(([ia, a], [ib, b]) => rank(a) - rank(b) || place(ia) - place(ib) || b.seq - a.seq)
      .map(([id]) => id);

  if (old.length === 0) {
    const diff = ctx.target - current.length;
    if (diff >= 0) return { spawn: diff, terminate: [] };
    return { spawn: 0, terminate: removalOrder(current).slice(0, -diff) };
  }
  const currentHealthy = current.filter(([, r]) => r.state === 'HEALTHY').length;
  const currentStarting = current.length - currentHealthy;
  const spawn = current.length < ctx.target && currentStarting === 0 ? 1 : 0;
  const removable = Math.max(0, Math.min(old.length, currentHealthy + old.length - ctx.target));
  const surplusCurrent = Math.max(0, current.length - ctx.target);
  return {
    spawn,
    terminate: [
      ...removalOrder(old).slice(0, removable),
      ...removalOrder(current).slice(0, surplusCurrent),
    ],
  };
}

/**
 * Removal preference: not-yet-serving replicas first, then unhealthy, then healthy; inside a
 * rank, the scale request's preferred order, then the newest.
 */
function rank(r: ReplicaEntry): number {
  return r.state === 'STARTING' ? 0 : r.state === 'UNHEALTHY' ? 1 : 2;
}

/** Failed starts in a row: crashed replicas that failed recovery plus provisioning retries. */
export function failedStarts(ctx: Pick<DeploymentContext, 'failedStarts' | 'retries'>): number {
  return (ctx.failedStarts ?? 0) + ctx.retries;
}

function healthyCount(ctx: DeploymentContext): number {
  return Object.values(ctx.replicas).filter((r) => r.state === 'HEALTHY' && !r.leaving).length;
}

/**
 * The deployment's deadlines (epoch ms), each read from the one clock (./clock.ts). `setup`
 * uses them with `unprovidedClock`; `deploymentMachineWithClock` provides them with a real one.
 */
const deadlines = (clock: MachineClock) => ({
  provision: ({ context }: { context: DeploymentContext }) =>
    clock.now() + context.settings.provision_timeout_s * 1000,
  retry: ({ context }: { context: DeploymentContext }) =>
    clock.now() + backoffDelayS(context.retries, context.settings) * 1000,
});
const unprovided = deadlines(unprovidedClock);

/**
 * What PROVISIONING and RUNNING both do with the events of a deployment that serves (or is
 * about to): children report, the target and revision change, routes are evicted, and a
 * delete starts DESTROYING. One table, spread into both states.
 */
const SERVING_EVENTS = {
  'replica.state': { actions: ['applyReplicaState', 'settleChildren', 'reconcile'] },
  'route.state': { actions: ['applyRouteState', 'settleChildren', 'reconcile'] },
  'deployment.scale': {
    guard: 'isValidScale',
    actions: ['setTarget', 'reconcile', 'recordChange'],
  },
  'deployment.update': { actions: ['setRevision', 'reconcile', 'recordChange'] },
  'deployment.evict': { actions: 'evictRoutes' },
  'deployment.delete': { target: 'DESTROYING' },
} as const;

export const deploymentMachine = setup({
  types: {
    context: {} as DeploymentContext,
    events: {} as DeploymentEvent,
    input: {} as DeploymentInput,
  },
  actors: {
    replica: replicaMachine,
    route: routeMachine,
    deadlineTimer,
    /** Turn the revision into a session spec (runtime-provided). Fails -> ERROR. */
    prepareSession: fromPromise<void, GenerateInput>(async () => {
      throw new Error('prepareSession: no implementation provided; the runtime supplies it');
    }),
  },
  actions: {
    /** Persist the transition into `state` (runtime-provided). */
    recordTransition: (_, _params: unknown) => {},
    /** Persist a context change that is not a transition (runtime-provided). */
    recordChange: () => {},
    /** Report a child that failed (runtime-provided); the deployment and its siblings go on. */
    reportChildError: () => {},

    applyReplicaState: assign({
      crashLoops: ({ context, event }) => {
        if (event.type !== 'replica.state') return context.crashLoops;
        if (event.state === 'HEALTHY') return 0;
        if (event.state === 'TERMINATING' && event.cause === 'recovery-failed') {
          return context.crashLoops + 1;
        }
        return context.crashLoops;
      },
      failedStarts: ({ context, event }) => {
        if (event.type !== 'replica.state') return context.failedStarts ?? 0;
        if (event.state === 'HEALTHY') return 0;
        if (event.state === 'TERMINATING' && event.cause === 'recovery-failed' && event.crashed) {
          return (context.failedStarts ?? 0) + 1;
        }
        return context.failedStarts ?? 0;
      },
      lastFailure: ({ context, event }) =>
        event.type === 'replica.state' &&
        event.state === 'TERMINATING' &&
        event.cause === 'recovery-failed'
          ? event.reason
          : (context.lastFailure ?? null),
      replicas: ({ context, event }) => {
        if (event.type !== 'replica.state') return context.replicas;
        const r = context.replicas[event.replicaId];
        if (!r) return context.replicas;
        return {
          ...context.replicas,
          [event.replicaId]: {
            ...r,
            state: event.state,
            endpoint: event.endpoint,
            waitingForCapacity: event.reason?.startsWith(CAPACITY_WAIT_REASON) ?? false,
          },
        };
      },
    }),
    applyRouteState: assign({
      replicas: ({ context, event }) => {
        if (event.type !== 'route.state') return context.replicas;
        const r = context.replicas[event.replicaId];
        if (!r) return context.replicas;
        const leaving = r.leaving || event.state === 'TERMINATING' || event.state === 'TERMINATED';
        return {
          ...context.replicas,
          [event.replicaId]: { ...r, routeState: event.state, leaving },
        };
      },
    }),

    /**
     * Keeps routes and replicas in step: provision a route once its replica has an endpoint,
     * drain the route of a replica that is ending, stop a replica whose route has drained.
     */
    settleChildren: enqueueActions(({ context, enqueue, self }) => {
      const children = self.getSnapshot().children;
      for (const [replicaId, r] of Object.entries(context.replicas)) {
        const rid = replicaActorId(replicaId);
        const tid = routeActorId(r.routeId);
        if (r.routeState === 'PENDING' && r.endpoint && children[tid]) {
          enqueue.sendTo(tid, { type: 'route.provision' });
        }
        const replicaEnding = r.state === 'TERMINATING' || r.state === 'TERMINATED';
        const routeAlive = r.routeState !== 'TERMINATED' && r.routeState !== 'GONE';
        if (replicaEnding && routeAlive && r.routeState !== 'TERMINATING' && children[tid]) {
          enqueue.sendTo(tid, {
            type: 'route.terminate',
            cause: `replica ${r.state.toLowerCase()}`,
          });
        }
        if (!routeAlive && !replicaEnding && children[rid]) {
          enqueue.sendTo(rid, { type: 'replica.terminate', cause: 'route drained' });
        }
      }
    }),

    /**
     * A child reached its final state (its done event comes after its last state event): stop
     * it and drop the replica entry once both the replica and its route are gone.
     */
    dropFinishedChild: enqueueActions(({ context, event, enqueue }) => {
      const actorId = (event as { actorId?: string }).actorId ?? '';
      const sep = actorId.indexOf(':');
      const kind = actorId.slice(0, sep);
      const id = actorId.slice(sep + 1);
      const next = { ...context.replicas };
      for (const [replicaId, r] of Object.entries(context.replicas)) {
        if (kind === 'route' && r.routeId === id) {
          next[replicaId] = { ...r, routeState: 'GONE' };
        } else if (kind === 'replica' && replicaId === id) {
          next[replicaId] = { ...r, state: 'TERMINATED', gone: true };
        } else continue;
        enqueue.stopChild(actorId);
        const e = next[replicaId] as ReplicaEntry;
        if (e.gone && e.routeState === 'GONE') delete next[replicaId];
      }
      enqueue.assign({ replicas: next });
    }),

    /** Create and remove replicas toward the target (never called in DESTROYING). */
    reconcile: enqueueActions(({ context, enqueue, self }) => {
      const plan = planReplicas(context);
      if (plan.spawn === 0 && plan.terminate.length === 0) return;
      const replicas = { ...context.replicas };
      let seq = context.seq;
      const children = self.getSnapshot().children;
      for (const replicaId of plan.terminate) {
        const r = replicas[replicaId];
        if (!r) continue;
        replicas[replicaId] = { ...r, leaving: true };
        const tid = routeActorId(r.routeId);
        if (children[tid] && r.routeState !== 'TERMINATING' && r.routeState !== 'TERMINATED') {
          enqueue.sendTo(tid, { type: 'route.terminate', cause: 'scale-down' });
        } else if (children[replicaActorId(replicaId)]) {
          enqueue.sendTo(replicaActorId(replicaId), {
            type: 'replica.terminate',
            cause: 'scale-down',
          });
        }
      }
      for (let i = 0; i < plan.spawn; i++) {
        seq += 1;
        const replicaId = `${context.deploymentId}-r${seq}`;
        const routeId = `${context.deploymentId}-t${seq}`;
        replicas[replicaId] = {
          revisionId: context.revisionId,
          state: 'STARTING',
          routeId,
          routeState: 'PENDING',
          endpoint: null,
          leaving: false,
          seq,
        };
        const s = context.settings;
        enqueue.spawnChild('replica', {
          id: replicaActorId(replicaId),
          systemId: replicaActorId(replicaId),
          input: {
            replicaId,
            deploymentId: context.deploymentId,
            revisionId: context.revisionId,
            health: s.health,
            terminate_timeout_s: s.terminate_timeout_s,
            max_restarts: s.max_restarts,
            backoff_base_s: s.backoff_base_s,
            backoff_cap_s: s.backoff_cap_s,
            start_delay_s: crashLoopDelayS(context.crashLoops, s),
          },
        });
        enqueue.spawnChild('route', {
          id: routeActorId(routeId),
          systemId: routeActorId(routeId),
          input: {
            routeId,
            replicaId,
            deploymentId: context.deploymentId,
            drain_timeout_s: s.drain_timeout_s,
          },
        });
      }
      enqueue.assign({ replicas, seq });
      enqueue({ type: 'recordChange' });
    }),

    /** DESTROYING: drain every route, then stop every replica (via settleChildren). */
    terminateAll: enqueueActions(({ context, enqueue, self }) => {
      const children = self.getSnapshot().children;
      const replicas = { ...context.replicas };
      for (const [replicaId, r] of Object.entries(context.replicas)) {
        replicas[replicaId] = { ...r, leaving: true };
        const tid = routeActorId(r.routeId);
        const rid = replicaActorId(replicaId);
        if (children[tid] && r.routeState !== 'TERMINATING' && r.routeState !== 'TERMINATED') {
          enqueue.sendTo(tid, { type: 'route.terminate', cause: 'deployment deleted' });
        } else if (children[rid] && r.state !== 'TERMINATING' && r.state !== 'TERMINATED') {
          enqueue.sendTo(rid, { type: 'replica.terminate', cause: 'deployment deleted' });
        }
      }
      enqueue.assign({ replicas });
    }),

    /** Forward an eviction sweep to every route (each route checks its own status). */
    evictRoutes: enqueueActions(({ context, event, enqueue, self }) => {
      if (event.type !== 'deployment.evict') return;
      const children = self.getSnapshot().children;
      for (const r of Object.values(context.replicas)) {
        const tid = routeActorId(r.routeId);
        if (children[tid]) enqueue.sendTo(tid, { type: 'route.evict', statuses: event.statuses });
      }
    }),

    setTarget: assign(({ context, event }) =>
      event.type === 'deployment.scale'
        ? { target: event.replicas, removalPreference: [...(event.removalOrder ?? [])] }
        : { target: context.target },
    ),
    setRevision: assign(({ context, event }) =>
      event.type === 'deployment.update'
        ? {
            revisionId: event.revisionId,
            settings: { ...context.settings, ...(event.settings ?? {}) },
          }
        : {},
    ),
    // Time-dependent: provided with the clock (deploymentMachineWithClock).
    setProvisionDeadline: assign({ deadline: unprovided.provision }),
    setRetryDeadline: assign({ deadline: unprovided.retry }),
    clearDeadline: assign({ deadline: null }),
    clearReason: assign({ reason: null }),
    setBounds: assign(({ event }) =>
      event.type === 'deployment.configure'
        ? { minReplicas: event.min_replicas, maxReplicas: event.max_replicas }
        : {},
    ),
    resetFailures: assign({ crashLoops: 0, failedStarts: 0, retries: 0, lastFailure: null }),
    setCrashLoopReason: assign({
      reason: ({ context }) =>
        `crash loop: ${failedStarts(context)} failed start(s) in a row (max_failed_starts ${context.settings.max_failed_starts}); last: ${context.lastFailure ?? context.reason ?? 'no replica became HEALTHY'}`,
    }),
  },
  guards: {
    isMinimumHealthy: ({ context }) =>
      context.target === 0 ||
      healthyCount(context) >= Math.max(1, Math.min(context.minReplicas, context.target)),
    isFailedStartLimitReached: ({ context }) =>
      failedStarts(context) >= (context.settings.max_failed_starts ?? Number.POSITIVE_INFINITY),
    isRetry: ({ context }) => context.retries > 0,
    isWaitingForCapacity: ({ context }) =>
      Object.values(context.replicas).some((r) => r.waitingForCapacity && isLive(r)),
    isEverythingTerminated: ({ context }) => Object.keys(context.replicas).length === 0,
    isValidScale: ({ context, event }) =>
      event.type === 'deployment.scale' &&
      Number.isInteger(event.replicas) &&
      event.replicas >= context.minReplicas &&
      event.replicas <= context.maxReplicas,
  },
}).createMachine({
  id: 'deployment',
  context: ({ input }) => {
    const settings = { ...DEFAULT_DEPLOYMENT_SETTINGS, ...(input.settings ?? {}) };
    return {
      deploymentId: input.deploymentId,
      name: input.name,
      revisionId: input.revisionId,
      target: input.replicas,
      // The bounds are the runtime's (src/domain/replica-bounds.ts owns their defaults).
      minReplicas: input.min_replicas,
      maxReplicas: input.max_replicas,
      settings: {
        ...settings,
        health: { ...DEFAULT_DEPLOYMENT_SETTINGS.health, ...settings.health },
      },
      seq: 0,
      replicas: {},
      retries: 0,
      crashLoops: 0,
      deadline: null,
      reason: null,
      lastFailure: null,
      failedStarts: 0,
    };
  },
  initial: 'PENDING',
  on: {
    'replica.state': { actions: ['applyReplicaState', 'settleChildren'] },
    'route.state': { actions: ['applyRouteState', 'settleChildren'] },
    'xstate.error.actor.*': { actions: 'reportChildError' },
    'xstate.done.actor.*': { actions: 'dropFinishedChild' },
    'deployment.configure': { actions: ['setBounds', 'recordChange'] },
  },
  states: {
    PENDING: {
      entry: { type: 'recordTransition', params: { state: 'PENDING' } },
      initial: 'deciding',
      on: {
        'deployment.delete': { target: 'DESTROYING' },
        'deployment.scale': { guard: 'isValidScale', actions: ['setTarget', 'recordChange'] },
        // The generation under way may be of the old revision; PROVISIONING spawns the new one.
        'deployment.update': { actions: ['setRevision', 'recordChange'] },
      },
      states: {
        deciding: {
          always: [
            {
              guard: 'isFailedStartLimitReached',
              target: '#deployment.ERROR',
              actions: 'setCrashLoopReason',
            },
            { guard: 'isRetry', target: 'backoff' },
            { target: 'generating' },
          ],
        },
        backoff: {
          entry: 'setRetryDeadline',
          invoke: {
            id: 'retry-deadline',
            src: 'deadlineTimer',
            input: ({ context }) => ({ deadline: context.deadline ?? 0, key: 'retry' }),
          },
          on: { 'deadline.reached': { target: 'generating' } },
        },
        generating: {
          invoke: {
            id: 'generate',
            src: 'prepareSession',
            input: ({ context }) => ({
              deploymentId: context.deploymentId,
              revisionId: context.revisionId,
            }),
            onDone: { target: '#deployment.PROVISIONING' },
            onError: {
              target: '#deployment.ERROR',
              actions: assign({
                reason: ({ event }) =>
                  `definition generator failed: ${event.error instanceof Error ? event.error.message : String(event.error)}`,
              }),
            },
          },
        },
      },
    },
    PROVISIONING: {
      entry: [
        'clearReason',
        'setProvisionDeadline',
        { type: 'recordTransition', params: { state: 'PROVISIONING' } },
        'reconcile',
      ],
      always: [
        { guard: 'isMinimumHealthy', target: 'RUNNING' },
        { guard: 'isFailedStartLimitReached', target: 'ERROR', actions: 'setCrashLoopReason' },
      ],
      invoke: {
        id: 'provision-deadline',
        src: 'deadlineTimer',
        input: ({ context }) => ({ deadline: context.deadline ?? 0, key: 'provision' }),
      },
      on: {
        ...SERVING_EVENTS,
        // Replicas waiting for capacity are not a failed provisioning: wait another period.
        'deadline.reached': [
          { guard: 'isWaitingForCapacity', target: 'PROVISIONING', reenter: true },
          {
            target: 'PENDING',
            actions: assign({
              retries: ({ context }) => context.retries + 1,
              reason: ({ context }) =>
                `no replica became HEALTHY within ${context.settings.provision_timeout_s} s; retrying`,
            }),
          },
        ],
      },
    },
    RUNNING: {
      entry: [
        'clearDeadline',
        'clearReason',
        assign({ retries: 0 }),
        { type: 'recordTransition', params: { state: 'RUNNING' } },
      ],
      on: {
        ...SERVING_EVENTS,
      },
    },
    DESTROYING: {
      entry: [
        'clearDeadline',
        { type: 'recordTransition', params: { state: 'DESTROYING' } },
        'terminateAll',
      ],
      always: { guard: 'isEverythingTerminated', target: 'TERMINATED' },
    },
    TERMINATED: {
      type: 'final',
      entry: { type: 'recordTransition', params: { state: 'TERMINATED' } },
    },
    ERROR: {
      // A crash loop's replicas are stopped: ERROR runs nothing until an update or a delete.
      entry: [
        'clearDeadline',
        { type: 'recordTransition', params: { state: 'ERROR' } },
        'terminateAll',
      ],
      on: {
        'deployment.delete': { target: 'DESTROYING' },
        'deployment.update': {
          target: 'PENDING',
          actions: ['setRevision', 'resetFailures', 'clearReason', 'recordChange'],
        },
      },
    },
  },
});

/**
 * The deployment with its one clock (./clock.ts), and its replicas and routes with the same
 * clock. Provide effects on the result; a provided `replica` or `route` must be built from
 * `replicaMachineWithClock` / `routeMachineWithClock` (it replaces the one given here).
 */
export function deploymentMachineWithClock(clock: MachineClock) {
  const at = deadlines(clock);
  return deploymentMachine.provide({
    actions: {
      setProvisionDeadline: assign({ deadline: at.provision }),
      setRetryDeadline: assign({ deadline: at.retry }),
    },
    actors: {
      deadlineTimer: deadlineTimerOn(clock),
      replica: replicaMachineWithClock(clock),
      route: routeMachineWithClock(clock),
    },
  });
}

/**
 * Deployment states an actor is alive in (all but the final TERMINATED), read from the machine:
 * the runtime's live-state filter and the metrics gauges use this list.
 */
export const LIVE_DEPLOYMENT_STATES = liveStates(deploymentMachine, DeploymentStates);
