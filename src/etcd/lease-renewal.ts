/**
 * The leader's lease, renewed and confirmed by this process (not only by etcd3's Lease, which
 * renews every TTL/3 and only reports a loss 2×TTL after its last keepalive).
 *
 * - A keepalive goes out every TTL/5 on a stream of our own. Each answer proves the lease
 *   alive until `sent + TTL − safety` (etcd restarts the TTL when it receives the keepalive,
 *   which is after we sent it): that bound is `confirmedUntil`.
 * - A timer fires at `confirmedUntil`. If our timers ran on time until then (the event loop
 *   was not stalled), etcd did not answer for a whole lease minus the safety margin: lost,
 *   before the lease can expire and a standby take over (a partition, etcd down).
 * - If the process was stalled instead (the event loop blocked by a long restore on a
 *   starved CPU, or the process stopped) and the stall is shorter than the lease since the
 *   last confirmed renewal plus one renewal interval, the lease may still be alive: one
 *   keepalive is sent at once and its answer decides (alive: go on, renewed; expired or no
 *   answer within a renewal interval: lost). A stall longer than that counts as lost at once,
 *   without a round trip (a process that was stopped past its lease writes nothing more).
 *   Before that fix a new leader whose restore held the loop for ~3 s lost a lease that etcd
 *   still held, exited, and the coordinators flapped (issue 15).
 */
import type { Etcd3 } from 'etcd3';

export interface LeaseRenewalOptions {
  /** Monotonic ms. Default `performance.now`. */
  now?: () => number;
  /** Keepalive period (ms). Default TTL/5, at least 200. */
  renewEveryMs?: number;
  /** Subtracted from each confirmation (ms): clock-rate and expiry-check slack. Default 500. */
  safetyMs?: number;
}

export interface LeaseRenewal {
  /** Sends the first keepalive and resolves whether etcd confirmed it; then keeps renewing. */
  start(): Promise<boolean>;
  /** True while the lease is confirmed alive now (no I/O). */
  confirmed(): boolean;
  /** Stops renewing (resign, or after a loss). Idempotent. */
  stop(): void;
}

interface KeepAliveStream {
  write(req: { ID: string }): unknown;
  on(event: 'data', fn: (res: { TTL: string | number }) => void): unknown;
  on(event: 'error' | 'end' | 'close', fn: (...args: unknown[]) => void): unknown;
  end(): unknown;
}

export function leaseRenewal(
  client: Etcd3,
  leaseId: string,
  ttlS: number,
  onLost: (reason: string) => void,
  opts: LeaseRenewalOptions = {},
): LeaseRenewal {
  const now = opts.now ?? (() => performance.now());
  const ttlMs = ttlS * 1000;
  const every = opts.renewEveryMs ?? Math.max(200, ttlMs / 5);
  const safety = Math.min(opts.safetyMs ?? 500, ttlMs / 4);

  let stopped = false;
  let confirmedUntil = Number.NEGATIVE_INFINITY;
  /** When the newest keepalive that etcd answered was sent. */
  let lastAckSent = Number.NEGATIVE_INFINITY;
  /** When one of our timers last ran: a gap much longer than `every` means a stall. */
  let lastRanAt = now();
  let stream: KeepAliveStream | undefined;
  let opening: Promise<KeepAliveStream> | undefined;
  /** Send times of keepalives not answered yet on the current stream (answers come in order). */
  const pending: number[] = [];
  const ackWaiters = new Set<() => void>();
  let interval: ReturnType<typeof setInterval> | undefined;
  let deadline: ReturnType<typeof setTimeout> | undefined;
  let late = false;

  function fail(reason: string): void {
    if (stopped) return;
    stop();
    onLost(reason);
  }

  function onAnswer(res: { TTL: string | number }): void {
    const sent = pending.shift();
    if (sent === undefined || stopped) return;
    const ttl = Number(res.TTL);
    if (!(ttl > 0)) {
      fail(`lease ${leaseId} expired`);
      return;
    }
    lastAckSent = Math.max(lastAckSent, sent);
    const until = sent + ttl * 1000 - safety;
    if (until > confirmedUntil) {
      confirmedUntil = until;
      armDeadline();
    }
    for (const w of [...ackWaiters]) w();
  }

  function openStream(): Promise<KeepAliveStream> {
    opening ??= client.leaseClient.leaseKeepAlive().then(
      (raw) => {
        const s = raw as unknown as KeepAliveStream;
        const drop = () => {
          if (stream !== s) return;
          stream = undefined;
          pending.length = 0;
        };
        s.on('data', onAnswer);
        s.on('error', drop);
        s.on('end', drop);
        s.on('close', drop);
        opening = undefined;
        if (stopped) {
          s.end();
          return s;
        }
        stream = s;
        return s;
      },
      (err: unknown) => {
        opening = undefined;
        throw err;
      },
    );
    return opening;
  }

  /** One keepalive now. Failures are silent: the deadline decides. */
  function send(): void {
    if (stopped) return;
    const write = (s: KeepAliveStream) => {
      if (stopped || stream !== s) return;
      try {
        pending.push(now());
        s.write({ ID: leaseId });
      } catch {
        pending.pop();
        stream = undefined;
      }
    };
    if (stream) write(stream);
    else openStream().then(write, () => {});
  }

  function armDeadline(): void {
    if (stopped) return;
    if (deadline) clearTimeout(deadline);
    deadline = setTimeout(onTimer, Math.max(0, confirmedUntil - now()) + 1);
  }

  function onTimer(): void {
    if (stopped) return;
    const t = now();
    const stalledMs = t - lastRanAt;
    lastRanAt = t;
    if (t <= confirmedUntil || late) return;
    if (stalledMs <= 2 * every) {
      fail(
        `lease ${leaseId} not confirmed by etcd for ${Math.round(ttlMs - safety)} ms (it may expire any moment)`,
      );
      return;
    }
    if (t > lastAckSent + ttlMs + every) {
      fail(
        `stalled ${Math.round(stalledMs)} ms, past lease ${leaseId}'s ${ttlS} s since its last confirmed renewal`,
      );
      return;
    }
    // Stalled for less than the lease: etcd may still hold it. Ask (a renewal) before deciding.
    late = true;
    void confirmLate(stalledMs);
  }

  async function confirmLate(stalledMs: number): Promise<void> {
    send();
    const ok = await waitConfirmed(every);
    late = false;
    if (!ok) {
      fail(
        `lease ${leaseId} not confirmed by etcd after a ${Math.round(stalledMs)} ms stall (it may have expired)`,
      );
    }
  }

  function waitConfirmed(budgetMs: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        ackWaiters.delete(check);
        resolve(ok);
      };
      const check = () => {
        if (now() <= confirmedUntil) finish(true);
      };
      const timer = setTimeout(() => finish(!stopped && now() <= confirmedUntil), budgetMs);
      ackWaiters.add(check);
    });
  }

  function stop(): void {
    if (stopped) return;
    stopped = true;
    if (interval) clearInterval(interval);
    if (deadline) clearTimeout(deadline);
    interval = undefined;
    deadline = undefined;
    const s = stream;
    stream = undefined;
    try {
      s?.end();
    } catch {
      // Already closed.
    }
  }

  return {
    async start() {
      lastRanAt = now();
      send();
      const ok = await waitConfirmed(2 * every);
      if (!ok || stopped) return false;
      interval = setInterval(() => {
        // Judge first: after a stall past the lease, not even a keepalive goes out.
        onTimer();
        send();
      }, every);
      return true;
    },
    confirmed: () => !stopped && now() <= confirmedUntil,
    stop,
  };
}
