/**
 * Publishes the routing table to etcd in Traefik's KV layout (traefik-layout.ts), so a
 * Traefik with the etcd provider routes like Flotilla's proxy.
 *
 * The race this prevents (docs/routing-table-consistency.md): a late update for a deployment
 * re-creating the keys of a deployment that was deleted meanwhile. Three guards:
 *  1. Updates for one deployment (or endpoint) are serialized: one promise chain per group,
 *     and a queued update absorbs any later ones (it reads the newest state when it runs).
 *  2. The write re-reads `current()` inside the serialized section, never the table that
 *     triggered it; so a publish of a stale table writes the current state (or nothing).
 *  3. A version record per group, outside Traefik's root (Traefik rejects a whole
 *     configuration with an unknown key under its root), holds the (epoch, table version) that
 *     wrote it; the transaction compares its mod revision, so a writer holding an older table
 *     (another process, or a coordinator that lost leadership) never overwrites a newer one.
 *     With `fence`, the transaction also requires the leader key to still exist.
 * Each group is a full replace in ONE transaction: delete everything under its prefixes but
 * the new keys, put its keys, put its version record; Traefik watches etcd and never sees a
 * half-written group.
 */
import { createHash } from 'node:crypto';
import { type Etcd3, type IKeyValue, Range } from 'etcd3';
import { FlotillaError } from '../domain/errors.ts';
import type { RoutingTable } from '../domain/routing.ts';
import { changeOf } from '../domain/routing-change.ts';
import {
  groupId,
  groupKeys,
  groupPrefixes,
  groupReplicaIds,
  parseGroupId,
  type TraefikGroup,
  tableGroups,
} from './traefik-layout.ts';

/** The logging this module needs (pino and the runtime's logger fit). */
export interface EtcdLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/**
 * The leader's fencing token: its election key and that key's create revision. The revision
 * grows with every new leader, so it orders writers: a newer leader's writes win over an
 * older one's whatever their clocks say, and an old leader's transactions fail once its key
 * is gone.
 */
export interface EtcdFence {
  key: string;
  createRevision: string;
}

export interface TraefikPublisherOptions {
  client: Etcd3;
  /** Traefik's `providers.etcd.rootKey`. Default `traefik`. */
  rootKey?: string | undefined;
  /**
   * Where the per-group version records live; must not start with `rootKey`. Default
   * `flotilla/traefik-versions/<rootKey>/`.
   */
  metaPrefix?: string | undefined;
  /** The newest routing table; read inside each serialized write. */
  current: () => RoutingTable;
  logger?: EtcdLogger | undefined;
  fence?: EtcdFence | undefined;
  /** Retry delay after a failed write (doubles up to 30 s). Default 1000 ms. */
  retryMs?: number | undefined;
}

/**
 * Writes routing tables to etcd.
 *
 * Invariants: after `publish(t)` resolves, every group in `t`, in `current()` or previously
 * written has the keys `current()` (as read during that call) gives it, or keys from a newer
 * table; when `t` comes with its change (`changeOf`) and a whole table was written before, only
 * the groups that change touches (its deployments, and the endpoints) are written; a group's keys never go back to an older table's; publishing the same table twice
 * leaves the same keys. A failed write is retried in the background until it succeeds or
 * `close()`. `close` waits for writes in flight and is idempotent; the client stays open.
 */
export interface TraefikPublisher {
  publish(table: RoutingTable): Promise<void>;
  close(): Promise<void>;
}

/** The version record of one group. */
interface GroupRecord {
  /** Leader epoch (fence create revision, `0` without a fence), decimal. */
  epoch: string;
  version: number;
  /** Whether the group has keys. */
  present: boolean;
  /** Digest of the keys written, to skip rewriting identical content. */
  digest: string;
  /**
   * Server URL key -> the replica id it points at (traefik-layout.ts `groupReplicaIds`):
   * Traefik's keys hold only addresses, and ports are reused between deployments.
   */
  replicas?: Record<string, string>;
}

interface Stored {
  record: GroupRecord | null;
  modRevision: string;
}

interface Lane {
  tail: Promise<void>;
  /** The queued (not yet started) write, which later requests join. */
  queued: Promise<void> | null;
}

/** (epoch, version) ordering; true when `a` is strictly newer than `b`. */
function newer(a: GroupRecord, b: GroupRecord): boolean {
  const ea = BigInt(a.epoch);
  const eb = BigInt(b.epoch);
  if (ea !== eb) return ea > eb;
  return a.version > b.version;
}

function parseRecord(buf: Buffer | undefined): GroupRecord | null {
  if (!buf) return null;
  try {
    const r = JSON.parse(buf.toString()) as Partial<GroupRecord>;
    if (
      typeof r.epoch === 'string' &&
      /^\d+$/.test(r.epoch) &&
      typeof r.version === 'number' &&
      typeof r.present === 'boolean' &&
      typeof r.digest === 'string'
    ) {
      return r as GroupRecord;
    }
  } catch {}
  return null;
}

function digestOf(keys: Map<string, string> | null): string {
  if (!keys) return '';
  const h = createHash('sha256');
  for (const k of [...keys.keys()].sort()) h.update(`${k}\0${keys.get(k)}\0`);
  return h.digest('hex').slice(0, 32);
}

export function createTraefikPublisher(opts: TraefikPublisherOptions): TraefikPublisher {
  const { client, current } = opts;
  const root = (opts.rootKey ?? 'traefik').replace(/\/+$/, '');
  const meta = opts.metaPrefix ?? `flotilla/traefik-versions/${root}/`;
  if (!root) throw new FlotillaError('validation', 'Traefik root key must not be empty');
  if (meta.startsWith(root)) {
    throw new FlotillaError(
      'validation',
      `version records prefix "${meta}" must not start with Traefik's root key "${root}": Traefik reads every key under its root and rejects unknown ones`,
    );
  }
  const epoch = opts.fence?.createRevision ?? '0';
  const log = opts.logger;
  const baseRetryMs = opts.retryMs ?? 1000;

  const lanes = new Map<string, Lane>();
  /** Last known version record per group (saves a read per write; the CAS keeps it honest). */
  const cache = new Map<string, Stored>();
  /** Groups that have keys in etcd as far as we know: kept in sync until they have none. */
  const present = new Set<string>();
  let discovered: Promise<void> | null = null;
  let closed = false;
  let retryTimer: ReturnType<typeof setTimeout> | null = null;
  let retryDelay = baseRetryMs;
  /** A publish of a whole table succeeded: from then on a table's change says what to write. */
  let synced = false;
  const dGroup = (name: string): TraefikGroup => ({ kind: 'deployment', name });

  /** Once: groups an earlier process left keys for (deleted while no coordinator ran). */
  function discover(): Promise<void> {
    discovered ??= (async () => {
      const res = await client.getAll().prefix(meta).exec();
      for (const kv of res.kvs) {
        const id = kv.key.toString().slice(meta.length);
        if (!parseGroupId(id)) continue;
        const record = parseRecord(kv.value);
        cache.set(id, { record, modRevision: kv.mod_revision });
        if (!record || record.present) present.add(id);
      }
    })().catch((err) => {
      discovered = null;
      throw err;
    });
    return discovered;
  }

  async function readStored(id: string): Promise<Stored> {
    const res = await client.get(`${meta}${id}`).exec();
    const kv: IKeyValue | undefined = res.kvs[0];
    const stored = { record: parseRecord(kv?.value), modRevision: kv?.mod_revision ?? '0' };
    cache.set(id, stored);
    return stored;
  }

  async function fenceHolds(): Promise<boolean> {
    if (!opts.fence) return true;
    const res = await client.get(opts.fence.key).exec();
    return res.kvs[0]?.create_revision === opts.fence.createRevision;
  }

  /** Brings one group's keys to what `current()` says. Runs serialized per group. */
  async function sync(g: TraefikGroup): Promise<void> {
    const id = groupId(g);
    let stored = cache.get(id) ?? (await readStored(id));
    for (let attempt = 0; ; attempt++) {
      const table = current();
      const keys = groupKeys(root, table, g);
      const mine: GroupRecord = {
        epoch,
        version: table.version,
        present: keys !== null,
        digest: digestOf(keys),
        ...(keys ? { replicas: groupReplicaIds(root, table, g) ?? {} } : {}),
      };
      const prev = stored.record;
      if (prev && !newer(mine, prev)) return; // a newer (or this) table is already there
      // Same keys as written: the keys stay, but the version record still moves forward. Were
      // it left at the older version, a late publish of a table between the two (another
      // process, or a write already in flight) would pass the guard and bring back keys this
      // table removed: a tombstone must carry the newest version that agrees with it.
      const sameKeys = prev !== null && prev.epoch === mine.epoch && prev.digest === mine.digest;
      let txn = client.if(`${meta}${id}`, 'Mod', '==', stored.modRevision);
      if (opts.fence) txn = txn.and(opts.fence.key, 'Create', '==', opts.fence.createRevision);
      const ops = [
        ...(sameKeys
          ? []
          : [
              ...groupPrefixes(root, g).flatMap((p) =>
                rangesExcluding(p, keys).map((r) => client.delete().inRange(r)),
              ),
              ...[...(keys ?? new Map<string, string>())].map(([k, v]) => client.put(k).value(v)),
            ]),
        client.put(`${meta}${id}`).value(JSON.stringify(mine)),
      ];
      const res = await txn.then(...ops).commit();
      if (res.succeeded) {
        // The put is the last op; its revision is the transaction's.
        cache.set(id, { record: mine, modRevision: res.header.revision });
        if (mine.present) present.add(id);
        else present.delete(id);
        return;
      }
      if (!(await fenceHolds())) {
        throw new FlotillaError(
          'conflict',
          'not the leader any more: the election key is gone, refusing to write Traefik keys',
          { details: [{ path: 'fence', message: opts.fence?.key ?? '' }] },
        );
      }
      if (attempt >= 20) {
        throw new FlotillaError('conflict', `Traefik keys of ${id} keep changing under us`, {
          retryable: true,
        });
      }
      // Someone else wrote the record: re-read it (and current()) and decide again.
      stored = await readStored(id);
    }
  }

  function schedule(g: TraefikGroup): Promise<void> {
    const id = groupId(g);
    let lane = lanes.get(id);
    if (!lane) {
      lane = { tail: Promise.resolve(), queued: null };
      lanes.set(id, lane);
    }
    if (lane.queued) return lane.queued;
    const l = lane;
    // The previous write's failure was reported to its own caller (and retried); here it only
    // must not stop this lane.
    const run = l.tail
      .catch(() => {})
      .then(() => {
        l.queued = null;
        return sync(g);
      });
    l.queued = run;
    l.tail = run;
    // Reported to the caller that awaited `run`; this chain only tidies the lane.
    void run
      .catch(() => {})
      .then(() => {
        if (l.tail === run && lanes.get(id) === l) lanes.delete(id);
      });
    return run;
  }

  function retryLater(): void {
    if (closed || retryTimer) return;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      // A whole pass: what failed may be any group.
      synced = false;
      // A failure schedules the next retry inside publish (retryLater): nothing is lost.
      publisher.publish(current()).catch(() => {});
    }, retryDelay);
    retryTimer.unref?.();
    retryDelay = Math.min(retryDelay * 2, 30_000);
  }

  const publisher: TraefikPublisher = {
    async publish(table) {
      if (closed) return;
      try {
        await discover();
      } catch (err) {
        retryLater();
        throw toError(err);
      }
      const groups = new Map<string, TraefikGroup>();
      const change = changeOf(table);
      const partial = change !== undefined && synced;
      if (partial && change) {
        // Only what the change touched: its deployments, and every endpoint (an endpoint's
        // keys follow the deployments it splits over). `synced`: a full pass has run.
        for (const d of change.upserted) groups.set(groupId(dGroup(d.name)), dGroup(d.name));
        for (const d of change.removed) groups.set(groupId(dGroup(d.name)), dGroup(d.name));
        for (const e of current().endpoints) {
          groups.set(groupId({ kind: 'endpoint', name: e.name }), {
            kind: 'endpoint',
            name: e.name,
          });
        }
        for (const id of present) {
          const g = parseGroupId(id);
          if (g?.kind === 'endpoint') groups.set(id, g);
        }
      } else {
        for (const g of [...tableGroups(table), ...tableGroups(current())]) {
          groups.set(groupId(g), g);
        }
        // A group whose first write is still in flight is not in `present` yet, but it may be
        // writing an older table's keys: queue a write after it that reads the newest state.
        for (const id of [...present, ...lanes.keys()]) {
          const g = parseGroupId(id);
          if (g) groups.set(id, g);
        }
      }
      const results = await Promise.allSettled([...groups.values()].map((g) => schedule(g)));
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed.length === 0) {
        retryDelay = baseRetryMs;
        if (!partial) synced = true;
        return;
      }
      const first = toError(failed[0]?.reason);
      log?.warn(
        { err: first.message, failedGroups: failed.length, version: table.version },
        'Traefik keys not written; retrying',
      );
      if (!(first instanceof FlotillaError && first.code === 'conflict' && !first.retryable)) {
        retryLater();
      }
      throw first;
    },
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
      await Promise.allSettled([...lanes.values()].map((l) => l.tail));
    },
  };
  return publisher;
}

/**
 * Everything under `prefix` except `keys`, as half-open ranges. A full replace deletes these
 * rather than the whole prefix because etcd refuses a transaction whose puts overlap its
 * deletes ("duplicate key given in txn request").
 */
export function rangesExcluding(
  prefix: string,
  keys: Map<string, string> | null,
): Array<{ start: Buffer; end: Buffer }> {
  const whole = Range.prefix(prefix);
  const inside = [...(keys?.keys() ?? [])]
    .map((k) => Buffer.from(k))
    .filter((k) => whole.includes(k))
    .sort(Buffer.compare);
  const out: Array<{ start: Buffer; end: Buffer }> = [];
  let start = whole.start;
  for (const k of inside) {
    if (Buffer.compare(start, k) < 0) out.push({ start, end: k });
    start = Buffer.concat([k, Buffer.from([0])]);
  }
  if (Buffer.compare(start, whole.end) < 0) out.push({ start, end: whole.end });
  return out;
}

function toError(err: unknown): Error {
  if (err instanceof FlotillaError) return err;
  return new FlotillaError(
    'dependency_unavailable',
    `etcd: ${err instanceof Error ? err.message : String(err)}`,
    {
      retryable: true,
      cause: err,
    },
  );
}
