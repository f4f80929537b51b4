/**
 * `GET /v1/events/stream[?deployment={id or name}]`: server-sent events of every recorded
 * transition (and state-preserving event, e.g. an outlier ejection), read from the history
 * table so each event's `id:` is its history row id.
 *
 * How it stays exact: a stream keeps a cursor (a row id). A change event from the runtime (or,
 * as a safety net for rows written by other processes, a timer) makes it wait for the snapshot
 * writer's barrier, so what the runtime announced is durable, and then page
 * `history({ after: cursor })`, twice (see `pump`) so a row whose id was taken before a
 * visible one but committed after it is not skipped. A reconnect with `Last-Event-ID: N` starts at N, so nothing is
 * lost or sent twice. Without it the stream starts after the newest row.
 *
 * How it stays bounded: the stream writes only while the socket's unsent bytes
 * (`writableLength`) stay under `maxBufferedBytes`. A client that does not read goes over it;
 * it then gets one `event: resync` (with the cursor it would resume from), the response ends,
 * and the socket is destroyed if it has not taken that within 30 s. Memory per client is capped by the
 * bound plus one history page.
 */
import type { FastifyInstance } from 'fastify';
import { FlotillaError } from '../domain/errors.ts';
import type { Flotilla } from '../index.ts';
import { lastHistoryId } from '../inspector/history.ts';
import type { TransitionRow } from '../store/store.ts';

export interface EventStreamOptions {
  flotilla: Pick<Flotilla, 'get' | 'subscribe' | 'store' | 'runtime'>;
  /** Unsent bytes a client may hold before it is dropped. Default 1 MiB. */
  maxBufferedBytes?: number;
  /** Re-read history this often even without a change event (other processes' rows). */
  pollIntervalMs?: number;
  /** A comment line this often, so proxies keep an idle stream open. */
  heartbeatMs?: number;
  /** History rows read per page. */
  pageSize?: number;
}

/** What each event's `data:` holds. */
export interface StreamEvent {
  id: number;
  actor: string;
  kind: TransitionRow['kind'];
  deployment_id: string;
  from: string | null;
  to: string;
  /** What was recorded: `transition`, or an event that changed no state (`outlier.ejected`). */
  event: string;
  /** Why, as the actor's context said at the time. */
  cause: string | null;
  at: string;
}

export function streamEventOf(r: TransitionRow): StreamEvent {
  return {
    id: r.id,
    actor: r.actor_id,
    kind: r.kind,
    deployment_id: r.deployment_id,
    from: r.from_state,
    to: r.to_state,
    event: r.event,
    cause: r.reason,
    at: r.at,
  };
}

function parseCursor(v: unknown, name: string): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new FlotillaError('validation', `${name}: expected a history row id (an integer >= 0)`, {
      details: [{ path: name, message: `expected an integer >= 0, got ${JSON.stringify(v)}` }],
    });
  }
  return n;
}

export function registerEventStream(app: FastifyInstance, opts: EventStreamOptions): void {
  const { flotilla } = opts;
  const maxBuffered = opts.maxBufferedBytes ?? 1024 * 1024;
  const pollMs = opts.pollIntervalMs ?? 2_000;
  const heartbeatMs = opts.heartbeatMs ?? 15_000;
  const pageSize = opts.pageSize ?? 500;
  const open = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const close of [...open]) close();
  });

  app.get('/v1/events/stream', { schema: { hide: true } }, async (req, reply) => {
    const query = (req.query ?? {}) as Record<string, string | undefined>;
    const deploymentId = query.deployment ? (await flotilla.get(query.deployment)).id : undefined;
    const resume = parseCursor(req.headers['last-event-id'], 'Last-Event-ID');
    let cursor = resume ?? (await lastHistoryId(flotilla.store, deploymentId));

    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    raw.write(`retry: 1000\nevent: ready\ndata: ${JSON.stringify({ cursor })}\n\n`);

    let closed = false;
    let running = false;
    let again = false;
    const close = (resync?: string) => {
      if (closed) return;
      closed = true;
      open.delete(close);
      unsubscribe();
      clearInterval(poller);
      clearInterval(heartbeat);
      if (resync && !raw.destroyed) {
        raw.write(`event: resync\ndata: ${JSON.stringify({ reason: resync, cursor })}\n\n`);
        // The connection goes with the response (Node closes it once the response is flushed);
        // one that has not taken even this within 30 s is destroyed.
        raw.shouldKeepAlive = false;
        setTimeout(() => raw.destroy(), 30_000).unref();
      }
      if (!raw.destroyed) raw.end();
    };
    const pump = async (): Promise<void> => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          // What the runtime announced is durable once the barrier resolves.
          await flotilla.runtime.writer.settled();
          const read = () =>
            flotilla.store.history({
              ...(deploymentId !== undefined ? { deploymentId } : {}),
              after: cursor,
              limit: pageSize,
            });
          while (!closed) {
            let page = await read();
            // Row ids are taken at insert, rows become visible at commit: a flush that took
            // lower ids may still be committing while a later single-row insert (an outlier
            // ejection) is visible. Reading again after the writer's barrier picks it up
            // before the cursor moves past it.
            if (page.items.length > 0) {
              await flotilla.runtime.writer.settled();
              page = await read();
            }
            let frames = '';
            for (const r of page.items) {
              frames += `id: ${r.id}\ndata: ${JSON.stringify(streamEventOf(r))}\n\n`;
            }
            if (closed) return;
            if (frames) raw.write(frames);
            const last = page.items[page.items.length - 1];
            if (last) cursor = last.id;
            if (raw.writableLength > maxBuffered) {
              close(`client too slow: more than ${maxBuffered} bytes unread; reconnect`);
              return;
            }
            if (page.next === null) break;
          }
        } while (again && !closed);
      } catch (err) {
        req.log.warn({ err: String(err) }, 'event stream read failed');
      } finally {
        running = false;
      }
    };
    const unsubscribe = flotilla.subscribe((e) => {
      if (deploymentId === undefined || e.deployment_id === deploymentId) void pump();
    });
    const poller = setInterval(() => void pump(), pollMs);
    const heartbeat = setInterval(() => {
      if (raw.writableLength > maxBuffered) close('client too slow; reconnect');
      else raw.write(': keepalive\n\n');
    }, heartbeatMs);
    poller.unref();
    heartbeat.unref();
    open.add(close);
    raw.on('close', () => close());
    if (resume !== undefined) void pump();
  });
}
