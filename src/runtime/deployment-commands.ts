/**
 * The commands that change a deployment (create, update, scale, destroy): each validates what
 * it is asked against the stored row and the live actor, writes the row, then tells the actor.
 */
import type { DeploymentInput, DeploymentSettings } from '../../machines/deployment.ts';
import type { ReplicaBackend } from '../backends/backend.ts';
import { FlotillaError } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
import { assertReplicaBounds } from '../domain/replica-bounds.ts';
import type { ModelRevisionSpec } from '../domain/revision.ts';
import type { AdmissionSettings, RoutingConfig } from '../domain/routing.ts';
import type { SessionSpec } from '../domain/session.ts';
import { generateSession } from '../session-generators/index.ts';
import type { DeploymentRecord, Store } from '../store/store.ts';
import { type DeploymentRef, deploymentSnapshotOf } from './actor-refs.ts';
import { type DeploymentOptions, optionsOf } from './deployment-options.ts';
import type { Quarantine } from './quarantine.ts';
import { type SessionCache, withDeclared } from './session-cache.ts';
import { topState } from './snapshot-writer.ts';
import type { TrackedDeployments } from './tracked-deployments.ts';
import { nextBounds, sameRevision } from './update-plan.ts';

export interface CreateDeploymentCommand extends DeploymentOptions {
  name: string;
  runtime_variant: string;
  /** The request as the user sent it (secrets already redacted by the caller if wanted). */
  request: unknown;
  revision: ModelRevisionSpec;
  /** resource_slots the operator declared (SessionSpec.declared); absent: all reserved. */
  declared_resources?: SessionSpec['declared'];
}

export interface UpdateDeploymentCommand {
  request: unknown;
  revision: ModelRevisionSpec;
  declared_resources?: SessionSpec['declared'];
  routing?: RoutingConfig;
  admission?: AdmissionSettings;
  min_replicas?: number;
  max_replicas?: number;
  scaling_policy?: unknown;
}

/** What the commands need from the runtime around them. */
export interface DeploymentCommandDeps {
  store: Store;
  backend: Pick<ReplicaBackend, 'stop'>;
  /** Deployments whose snapshot was not restorable: refused changes, deletable. */
  quarantine: Quarantine;
  tracked: TrackedDeployments;
  sessions: SessionCache;
  /** The live actor of a deployment, if it runs here. */
  ref(deploymentId: string): DeploymentRef | undefined;
  /** Asks the coordinator to spawn the deployment's actor. */
  spawn(record: DeploymentRecord, session?: SessionSpec): void;
  /** Resolves when the transitions recorded so far are durable. */
  barrier(): Promise<void>;
  /** The deployment's entry in the routing table changed. */
  routingChanged(deploymentId: string): void;
  /** The runtime's clock (epoch ms): stamps `last_scaled_at`. Default Date.now. */
  now?: () => number;
}

/** States in which a deployment takes update and scale. */
const ACCEPTS_CHANGES = ['PENDING', 'PROVISIONING', 'RUNNING'];

export function notFound(idOrName: string): FlotillaError {
  return new FlotillaError('not_found', `deployment "${idOrName}" not found`, {
    details: [{ path: 'id', message: `no deployment with id or name "${idOrName}"` }],
  });
}

/** The machine's health settings from a session's readiness check. */
export function healthSettings(s: SessionSpec): DeploymentSettings['health'] {
  return {
    healthy_threshold: s.health.healthy_threshold,
    unhealthy_threshold: s.health.unhealthy_threshold,
    startup_timeout_s: s.health.startup_timeout_s,
  };
}

/** The deployment actor's input for a stored row. */
export function deploymentInput(
  record: DeploymentRecord,
  options: DeploymentOptions,
  session: SessionSpec | undefined,
  defaults: Partial<DeploymentSettings>,
): DeploymentInput {
  return {
    deploymentId: record.id,
    name: record.name,
    revisionId: record.revision_id ?? '',
    replicas: record.target_replicas,
    min_replicas: options.min_replicas,
    max_replicas: options.max_replicas,
    settings: { ...defaults, ...(session ? { health: healthSettings(session) } : {}) },
  };
}

export class DeploymentCommands {
  constructor(private readonly deps: DeploymentCommandDeps) {}

  /** Writes the deployment and its first revision, then spawns its actor; returns its id. */
  async create(cmd: CreateDeploymentCommand): Promise<string> {
    assertReplicaBounds(cmd);
    const session = withDeclared(generateSession(cmd.revision), cmd.declared_resources);
    const id = newId();
    const revisionId = newId();
    const record = await this.deps.store.createDeployment({
      id,
      name: cmd.name,
      runtime_variant: cmd.runtime_variant,
      spec: {
        request: cmd.request,
        min_replicas: cmd.min_replicas,
        max_replicas: cmd.max_replicas,
        routing: cmd.routing,
        admission: cmd.admission,
        scaling_group: cmd.scaling_group,
        scaling_policy: cmd.scaling_policy,
      },
      target_replicas: cmd.replicas,
      revision: { id: revisionId, number: 1, spec: cmd.revision, session },
    });
    this.deps.sessions.set(revisionId, session);
    this.deps.tracked.track(record);
    this.deps.spawn(record, session);
    await this.deps.barrier();
    return id;
  }

  /**
   * Sets the target replica count and stamps `last_scaled_at` (the autoscaling cooldown counts
   * manual scales too, and survives a restart). `removalOrder`: replicas to remove first, inside
   * the machine's own rank (STARTING, UNHEALTHY, then HEALTHY).
   */
  async scale(
    idOrName: string,
    replicas: number,
    opts: { removalOrder?: readonly string[] } = {},
  ): Promise<string> {
    // A deployment this runtime tracks, named by id (the autoscaler, an activation): its actor
    // is told at once, without a store read first, so a replica starts without waiting for
    // the store (an activation holds requests meanwhile).
    const known = this.deps.tracked.get(idOrName);
    const { id, ref, tracked } =
      known && this.deps.ref(known.id)
        ? { id: known.id, ref: this.liveRef(known.id, known.name, 'scale'), tracked: known }
        : await this.liveDeployment(idOrName, 'scale').then(({ record, ref }) => ({
            id: record.id,
            ref,
            tracked: this.deps.tracked.get(record.id) ?? this.deps.tracked.track(record),
          }));
    assertReplicaBounds({
      replicas,
      min_replicas: tracked.options.min_replicas,
      max_replicas: tracked.options.max_replicas,
    });
    ref.send({
      type: 'deployment.scale',
      replicas,
      ...(opts.removalOrder ? { removalOrder: opts.removalOrder } : {}),
    });
    const at = (this.deps.now ?? Date.now)();
    tracked.lastScaledAt = at;
    await this.deps.store.updateDeployment(id, {
      target_replicas: replicas,
      last_scaled_at: new Date(at),
    });
    tracked.options.replicas = replicas;
    await this.deps.barrier();
    return id;
  }

  /**
   * A new revision only when what the replicas run changed; bounds and the scaling policy are
   * applied (validated) without one. Accepted in PENDING, PROVISIONING, RUNNING and ERROR (a
   * retry), so PostgreSQL and the actor never disagree; refused (409) otherwise.
   */
  async update(idOrName: string, cmd: UpdateDeploymentCommand): Promise<string> {
    const { record, ref } = await this.liveDeployment(idOrName, 'update', ['ERROR']);
    const options = optionsOf(record);
    const bounds = nextBounds(
      options,
      cmd,
      cmd.scaling_policy as { min_replicas?: number; max_replicas?: number } | undefined,
    );
    const session = withDeclared(generateSession(cmd.revision), cmd.declared_resources);
    const current = record.revision_id
      ? await this.deps.sessions.revision(record.revision_id)
      : null;
    const changed =
      !current ||
      !sameRevision(
        { spec: current.spec, declared: (current.session as SessionSpec | null)?.declared },
        { spec: cmd.revision, declared: session.declared },
      );
    let revisionId = record.revision_id ?? '';
    if (changed) {
      const revisions = await this.deps.store.listRevisions(record.id);
      const number = Math.max(0, ...revisions.map((r) => r.number)) + 1;
      revisionId = newId();
      await this.deps.store.addRevision({
        id: revisionId,
        deployment_id: record.id,
        number,
        spec: cmd.revision,
        session,
      });
      this.deps.sessions.set(revisionId, session);
    }
    const spec = {
      ...(typeof record.spec === 'object' && record.spec !== null ? record.spec : {}),
      request: cmd.request,
      ...(cmd.routing ? { routing: cmd.routing } : {}),
      ...(cmd.admission ? { admission: cmd.admission } : {}),
      ...(cmd.scaling_policy !== undefined ? { scaling_policy: cmd.scaling_policy } : {}),
      ...bounds,
    };
    const updated = await this.deps.store.updateDeployment(record.id, {
      ...(changed ? { revision_id: revisionId } : {}),
      spec,
    });
    this.deps.tracked.track(updated);
    if (
      bounds.min_replicas !== options.min_replicas ||
      bounds.max_replicas !== options.max_replicas
    ) {
      ref.send({ type: 'deployment.configure', ...bounds });
    }
    if (changed) {
      const settings: Partial<DeploymentSettings> = { health: healthSettings(session) };
      ref.send({ type: 'deployment.update', revisionId, settings });
    }
    await this.deps.barrier();
    this.deps.routingChanged(record.id);
    return record.id;
  }

  async destroy(idOrName: string): Promise<string> {
    const record = await this.record(idOrName);
    if (record.state === 'TERMINATED') {
      throw new FlotillaError(
        'invalid_state',
        `deployment "${record.name}" is already TERMINATED`,
        {
          details: [{ path: 'state', message: 'a TERMINATED deployment cannot be deleted again' }],
        },
      );
    }
    if (this.deps.quarantine.get(record.id)) {
      await this.deps.quarantine.remove(record.id, this.deps);
      return record.id;
    }
    const ref = this.deps.ref(record.id);
    if (ref && topState(deploymentSnapshotOf(ref).value) !== 'DESTROYING') {
      ref.send({ type: 'deployment.delete' });
      await this.deps.barrier();
    }
    return record.id;
  }

  /** The stored row of a deployment, by id or name; `not_found` when there is none. */
  async record(idOrName: string): Promise<DeploymentRecord> {
    const r = await this.deps.store.getDeployment(idOrName);
    if (!r) throw notFound(idOrName);
    return r;
  }

  private async liveDeployment(idOrName: string, action: string, also: string[] = []) {
    const record = await this.record(idOrName);
    const ref = this.liveRef(record.id, record.name, action, also, record.state);
    return { record, ref };
  }

  /**
   * The live actor of a deployment that takes `action` now; throws `invalid_state` when it is
   * quarantined, not running here, or in a state that refuses it. `storedState`: what the row
   * says, for the message when no actor runs.
   */
  private liveRef(
    id: string,
    name: string,
    action: string,
    also: string[] = [],
    storedState = 'unknown',
  ): DeploymentRef {
    const quarantined = this.deps.quarantine.get(id);
    if (quarantined) {
      throw new FlotillaError(
        'invalid_state',
        `cannot ${action} deployment "${name}": it is quarantined (${quarantined.reason}); delete it`,
        { details: [{ path: 'state', message: quarantined.reason }] },
      );
    }
    const ref = this.deps.ref(id);
    const state = ref ? topState(deploymentSnapshotOf(ref).value) : storedState;
    const accepts = [...ACCEPTS_CHANGES, ...also];
    if (!ref || !accepts.includes(state)) {
      throw new FlotillaError(
        'invalid_state',
        `cannot ${action} deployment "${name}" in state ${state}`,
        {
          details: [
            {
              path: 'state',
              message: `${action} is accepted in ${accepts.join(', ')}; the deployment is ${state}`,
            },
          ],
        },
      );
    }
    return ref;
  }
}
