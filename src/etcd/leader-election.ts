/**
 * One coordinator at a time: leader election through etcd3's Election (a key under a lease;
 * the oldest key wins; the others wait for the keys before theirs to go).
 *
 * Losing leadership must be noticed before another process can win it. etcd3's own `lost`
 * event only fires 2×TTL after the last keepalive (node_modules/etcd3/lib/lease.js,
 * `keepalive()`), i.e. after a standby may already have taken over. So the leader renews and
 * confirms its lease itself (lease-renewal.ts): a keepalive every TTL/5 whose answer proves the
 * lease alive until `sent + TTL − 0.5 s`; without an answer by then, leadership counts as lost,
 * unless the process was stalled (event loop blocked by a restore on a starved CPU) for less
 * than the lease, in which case one late keepalive decides. The key being deleted and the
 * campaign failing count as lost too. `onLost` is called once; the caller must stop writing at
 * once (serve exits non-zero and lets its supervisor restart it).
 */
import type { Campaign, Etcd3, Watcher } from 'etcd3';
import { FlotillaError } from '../domain/errors.ts';
import { leaseRenewal } from './lease-renewal.ts';
import type { EtcdFence } from './traefik-publisher.ts';

export interface LeadershipOptions {
  client: Etcd3;
  /** Election name; the keys are `election/<name>/<lease id>`. Default `flotilla/coordinator`. */
  name?: string | undefined;
  /** This process, as other contenders see it (unique: host, pid and a random part). */
  id: string;
  /** Lease TTL in seconds (at least 2). Default 5. */
  ttlS?: number | undefined;
  /** Called once when leadership is lost (or cannot be confirmed) after being won. */
  onLost: (reason: string) => void;
  /** Called once if another process leads when we start waiting, with its id. */
  onStandby?: ((leader: string | undefined) => void) | undefined;
  /** Gives up campaigning (rejects with an `aborted` error). */
  signal?: AbortSignal | undefined;
}

/** Won leadership. */
export interface Leadership {
  /** The election key and its create revision: a fencing token for writes (publisher `fence`). */
  readonly fence: EtcdFence;
  /** Leader id. */
  readonly id: string;
  /**
   * True while etcd has confirmed the lease alive until now (no I/O). A writer that wants to
   * be strict checks it before each write: it turns false at once when the process resumes
   * after being stopped or starved past the confirmation, before the watchdog has decided.
   */
  confirmed(): boolean;
  /** Stops the watchdog and gives leadership up at once (revokes the lease). Idempotent. */
  resign(): Promise<void>;
}

/**
 * Campaigns and resolves once this process is the leader. Rejects when the campaign fails
 * before that (etcd unreachable, lease not granted) or on abort.
 */
export async function campaignForLeadership(opts: LeadershipOptions): Promise<Leadership> {
  const { client, id } = opts;
  const name = opts.name ?? 'flotilla/coordinator';
  const ttlS = opts.ttlS ?? 5;
  if (!Number.isInteger(ttlS) || ttlS < 2) {
    throw new FlotillaError(
      'validation',
      `leader lease TTL must be a whole number ≥ 2 s, got ${ttlS}`,
    );
  }
  const election = client.election(name, ttlS);
  const campaign: Campaign = election.campaign(id);
  let resigned = false;
  const giveUp = () => {
    resigned = true;
    // Safe to ignore: a lease we fail to revoke expires by itself within its TTL.
    return campaign.resign().catch(() => {});
  };

  // Tell the caller when it is waiting behind someone else.
  let standbyTold = false;
  let elected = false;
  const observer = await election.observe().catch(() => null);
  const tellStandby = (leader: string | undefined) => {
    if (standbyTold || elected || leader === id || leader === undefined) return;
    standbyTold = true;
    opts.onStandby?.(leader);
  };
  if (observer) {
    observer.on('change', (leader) => tellStandby(leader));
    observer.on('error', () => {});
    tellStandby(observer.leader());
  }

  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        void giveUp();
        reject(new FlotillaError('dependency_unavailable', 'leader campaign aborted'));
      };
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      campaign.once('elected', () => {
        opts.signal?.removeEventListener('abort', onAbort);
        resolve();
      });
      campaign.once('error', (err) => {
        opts.signal?.removeEventListener('abort', onAbort);
        reject(
          new FlotillaError('dependency_unavailable', `leader campaign failed: ${err.message}`, {
            retryable: true,
            cause: err,
          }),
        );
      });
    });
    elected = true;
  } finally {
    // Safe to ignore: the observer only reported who leads; its watch dies with the client.
    await observer?.cancel().catch(() => {});
  }

  const key = await campaign.getCampaignKey();
  const leaseId = key.slice(key.lastIndexOf('/') + 1);
  const kv = (await client.get(key).exec()).kvs[0];
  if (!kv) {
    await giveUp();
    throw new FlotillaError('conflict', 'elected, but the election key is already gone', {
      retryable: true,
    });
  }
  const fence: EtcdFence = { key, createRevision: kv.create_revision };

  let lostCalled = false;
  let stopped = false;
  let watcher: Watcher | null = null;
  const renewal = leaseRenewal(client, leaseId, ttlS, (reason) => lost(reason));
  const stop = () => {
    stopped = true;
    renewal.stop();
    // Safe to ignore: we stop listening either way; the watch dies with the client.
    void watcher?.cancel().catch(() => {});
  };
  /** onLost is only called once the caller has been told it leads. */
  let armed = false;
  const lost = (reason: string) => {
    if (lostCalled || stopped || resigned) return;
    lostCalled = true;
    stop();
    if (armed) opts.onLost(reason);
  };

  campaign.on('error', (err: Error) => lost(`campaign failed: ${err.message}`));
  watcher = await client
    .watch()
    .key(key)
    .create()
    .catch(() => null);
  watcher?.on('delete', () => lost('election key deleted'));
  watcher?.on('error', () => {});
  if (!lostCalled && !(await renewal.start())) lost(`lease ${leaseId} not confirmed by etcd`);
  if (lostCalled) {
    await giveUp();
    throw new FlotillaError('conflict', 'elected, but the lease could not be confirmed', {
      retryable: true,
    });
  }
  armed = true;

  return {
    fence,
    id,
    confirmed: () => !lostCalled && !resigned && renewal.confirmed(),
    async resign() {
      if (!stopped) stop();
      await giveUp();
    },
  };
}
