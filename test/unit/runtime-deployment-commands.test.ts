import { describe, expect, it } from 'vitest';
import { FlotillaError } from '../../src/domain/errors.ts';
import type { DeploymentRef } from '../../src/runtime/actor-refs.ts';
import { DeploymentCommands } from '../../src/runtime/deployment-commands.ts';
import { Quarantine } from '../../src/runtime/quarantine.ts';
import { SessionCache } from '../../src/runtime/session-cache.ts';
import { TrackedDeployments } from '../../src/runtime/tracked-deployments.ts';
import type { DeploymentRecord, RevisionRecord, Store } from '../../src/store/store.ts';
import { echoCommand } from '../harness/runtime-fixture.ts';

/** The few store operations the commands use, in memory. */
function memoryStore() {
  const deployments = new Map<string, DeploymentRecord>();
  const revisions: RevisionRecord[] = [];
  const store: Partial<Store> = {
    async createDeployment(d) {
      const r: DeploymentRecord = {
        id: d.id,
        name: d.name,
        runtime_variant: d.runtime_variant,
        spec: d.spec,
        revision_id: d.revision.id,
        target_replicas: d.target_replicas,
        state: 'PENDING',
        reason: null,
        created_at: '',
        updated_at: '',
        deleted_at: null,
        last_scaled_at: null,
      };
      deployments.set(r.id, r);
      return r;
    },
    async getDeployment(idOrName) {
      return (
        deployments.get(idOrName) ??
        [...deployments.values()].find((d) => d.name === idOrName) ??
        null
      );
    },
    async updateDeployment(id, patch) {
      const r = { ...deployments.get(id)!, ...patch } as DeploymentRecord;
      deployments.set(id, r);
      return r;
    },
    async listRevisions(id) {
      return revisions.filter((r) => r.deployment_id === id);
    },
    async addRevision(rev) {
      revisions.push(rev as RevisionRecord);
    },
    async getRevision() {
      return null;
    },
  };
  return { store: store as Store, deployments };
}

/** A deployment actor that records what it is sent and is in `state`. */
function fakeRef(state: string) {
  const sent: Array<{ type: string }> = [];
  const ref = {
    send: (e: { type: string }) => sent.push(e),
    getSnapshot: () => ({ value: state }),
  };
  return { ref: ref as unknown as DeploymentRef, sent };
}

function setup(state = 'RUNNING') {
  const { store, deployments } = memoryStore();
  const tracked = new TrackedDeployments();
  const actor = fakeRef(state);
  const spawned: string[] = [];
  const dirty: string[] = [];
  const commands = new DeploymentCommands({
    store,
    backend: { stop: async () => {} },
    quarantine: new Quarantine(),
    tracked,
    sessions: new SessionCache(store),
    ref: (id) => (spawned.includes(id) ? actor.ref : undefined),
    spawn: (record) => spawned.push(record.id),
    barrier: async () => {},
    routingChanged: (id) => dirty.push(id),
  });
  return { commands, store, tracked, deployments, spawned, sent: actor.sent, dirty };
}

async function rejection(p: Promise<unknown>): Promise<FlotillaError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FlotillaError);
  return err as FlotillaError;
}

describe('deployment commands', () => {
  it('create writes the row, tracks it with its options and spawns its actor', async () => {
    const { commands, tracked, spawned } = setup();
    const id = await commands.create({ ...echoCommand('m', 2), max_replicas: 5 });
    expect(spawned).toEqual([id]);
    expect(tracked.get(id)?.options).toMatchObject({ replicas: 2, max_replicas: 5 });
  });

  it('create refuses replicas outside [min_replicas, max_replicas]', async () => {
    const { commands, spawned } = setup();
    const err = await rejection(commands.create({ ...echoCommand('m', 11), max_replicas: 10 }));
    expect(err.code).toBe('validation');
    expect(err.message).toBe('replicas must be an integer from 0 to 10');
    expect(err.details).toEqual([
      { path: 'replicas', message: 'expected an integer from 0 to 10, got 11' },
    ]);
    expect(spawned).toEqual([]);
  });

  it('scale tells the actor and stores the target; refuses a non-integer or out-of-bounds count', async () => {
    const { commands, sent, deployments, tracked } = setup();
    const id = await commands.create({ ...echoCommand('m', 1), min_replicas: 1, max_replicas: 3 });
    await commands.scale('m', 3);
    expect(sent).toEqual([{ type: 'deployment.scale', replicas: 3 }]);
    expect(deployments.get(id)?.target_replicas).toBe(3);
    expect(tracked.get(id)?.options.replicas).toBe(3);
    expect((await rejection(commands.scale(id, 4))).details[0]?.path).toBe('replicas');
    expect((await rejection(commands.scale(id, 0))).code).toBe('validation');
    expect((await rejection(commands.scale(id, 1.5))).code).toBe('validation');
    expect(sent).toHaveLength(1);
  });

  it('scale by the id of a deployment running here tells its actor before any store read', async () => {
    const { commands, store, sent, deployments } = setup();
    const id = await commands.create({ ...echoCommand('m', 1), min_replicas: 0, max_replicas: 3 });
    let reads = 0;
    const getDeployment = store.getDeployment.bind(store);
    store.getDeployment = (idOrName) => {
      reads++;
      return getDeployment(idOrName);
    };
    const scaled = commands.scale(id, 2);
    // Sent synchronously, before the scale's first await.
    expect(sent).toEqual([{ type: 'deployment.scale', replicas: 2 }]);
    await scaled;
    expect(sent).toHaveLength(1);
    expect(reads).toBe(0);
    expect(deployments.get(id)?.target_replicas).toBe(2);
  });

  it('scale and update are refused outside PENDING, PROVISIONING and RUNNING', async () => {
    const { commands } = setup('DESTROYING');
    await commands.create(echoCommand('m', 1));
    const err = await rejection(commands.scale('m', 2));
    expect(err.code).toBe('invalid_state');
    expect(err.message).toBe('cannot scale deployment "m" in state DESTROYING');
    const update = await rejection(
      commands.update('m', { request: {}, revision: echoCommand('m', 1).revision }),
    );
    expect(update.code).toBe('invalid_state');
  });

  it('update adds the next revision, switches the row to it and republishes the routes', async () => {
    const { commands, sent, deployments, dirty } = setup();
    const id = await commands.create(echoCommand('m', 1));
    await commands.update('m', {
      request: { x: 1 },
      revision: echoCommand('m', 1).revision,
      routing: { strategy: 'weighted', request_timeout_s: 5, retries: 0 },
    });
    const rec = deployments.get(id)!;
    expect(rec.revision_id).not.toBe(null);
    expect(sent[0]).toMatchObject({ type: 'deployment.update', revisionId: rec.revision_id });
    expect(dirty).toEqual([id]);
  });

  it('destroy sends delete once; a TERMINATED deployment cannot be deleted again; unknown is not_found', async () => {
    const { commands, sent, deployments } = setup();
    const id = await commands.create(echoCommand('m', 1));
    await commands.destroy('m');
    expect(sent).toEqual([{ type: 'deployment.delete' }]);
    deployments.set(id, { ...deployments.get(id)!, state: 'TERMINATED' });
    expect((await rejection(commands.destroy(id))).code).toBe('invalid_state');
    expect((await rejection(commands.destroy('nope'))).code).toBe('not_found');
  });
});
