/**
 * `flotilla status NAME [--events N] [--json]`: one deployment: replicas, routes with their
 * last health check, recent events, and why it is not RUNNING. `--json` prints the API view.
 */
import type { DeploymentView } from '../../index.ts';
import type { TransitionRow } from '../../store/store.ts';
import { COMMON_HELP, enc, intFlag, parseCommand, usageError, withClient } from '../args.ts';
import { age, replicaSummary, table } from '../format.ts';
import type { ApiClient } from '../http-client.ts';

const HELP = `usage: flotilla status <name or id> [options]

Shows a deployment: state and why it is not RUNNING, replicas, routes with their last health
check, the proxy's load, and the most recent transitions.

options:
  --events <n>     how many recent transitions to show (default 10, 0 for none)

${COMMON_HELP}`;

interface StatusView extends DeploymentView {
  load?: { level: string; inflight: number; queued: number; capacity: number } | null;
}

/**
 * The last `n` transitions and how many there are in all: pages through the history (oldest
 * first) keeping the tail.
 */
async function recentEvents(
  client: ApiClient,
  id: string,
  n: number,
): Promise<{ tail: TransitionRow[]; total: number }> {
  if (n === 0) return { tail: [], total: 0 };
  let tail: TransitionRow[] = [];
  let total = 0;
  let after: number | null = null;
  for (let page = 0; page < 1000; page++) {
    const q: string = after === null ? '?limit=1000' : `?limit=1000&after=${after}`;
    const res: { items: TransitionRow[]; next: number | null } = await client.get(
      `/v1/deployments/${enc(id)}/events${q}`,
    );
    total += res.items.length;
    tail = [...tail, ...res.items].slice(-n);
    if (res.next === null) break;
    after = res.next;
  }
  return { tail, total };
}

/** The heading of the events table; says so when older transitions are left out. */
export function eventsHeading(shown: number, total: number): string {
  return shown < total
    ? `recent events (last ${shown} of ${total}; --events N shows more):`
    : 'recent events:';
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommand('status', HELP, argv, { events: { type: 'string' } });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1)
    return usageError('status', 'give exactly one deployment name or id');
  const nEvents = intFlag('--events', values.events, { max: 1000 }) ?? 10;
  if (typeof nEvents === 'string') return usageError('status', nEvents);
  return withClient('status', values, async (client) => {
    const v = await client.get<StatusView>(`/v1/deployments/${enc(positionals[0]!)}`);
    if (values.json) {
      console.log(JSON.stringify(v, null, 2));
      return 0;
    }
    const { tail: events, total: totalEvents } = await recentEvents(client, v.id, nEvents);
    const lines = [
      `name:      ${v.name}  (id ${v.id})`,
      `state:     ${v.state}${v.deleted_at ? `  (deleted ${age(v.deleted_at)} ago)` : ''}`,
    ];
    if (v.reason)
      lines.push(
        `${v.state === 'RUNNING' ? 'attention' : 'why'}:${v.state === 'RUNNING' ? ' ' : '       '}${v.reason}`,
      );
    lines.push(
      `variant:   ${v.runtime_variant}  (revision ${v.revision_id ?? 'none'})`,
      `replicas:  ${v.healthy_replicas}/${v.target_replicas} HEALTHY  (${replicaSummary(v)}; min ${v.min_replicas}, max ${v.max_replicas})`,
      `routing:   ${v.routing.strategy}, timeout ${v.routing.request_timeout_s} s, ${v.routing.retries} retries`,
    );
    if (v.load) {
      lines.push(
        `load:      ${v.load.level}, ${v.load.inflight} in flight, ${v.load.queued} queued, capacity ${v.load.capacity}`,
      );
    }
    if (v.scale_to_zero) {
      lines.push(
        `to zero:   ${v.scale_to_zero.message ?? `after ${v.scale_to_zero.after_s} s without a request`}`,
      );
    }
    if (v.autoscaling) {
      const a = v.autoscaling;
      lines.push(`autoscale: ${a.metric}, ${a.state}${a.last ? ` — ${a.last}` : ''}`);
    }
    lines.push(`age:       ${age(v.created_at)}`);
    console.log(lines.join('\n'));
    const live = v.replicas.filter((r) => r.state !== 'TERMINATED');
    if (live.length > 0) {
      console.log(
        `\n${table(
          ['REPLICA', 'STATE', 'ENDPOINT', 'RESTARTS', 'REASON'],
          live.map((r) => [r.id, r.state, r.endpoint ?? '-', String(r.restarts), r.reason ?? '']),
        )}`,
      );
    }
    const routes = v.routes.filter((r) => r.state !== 'TERMINATED');
    if (routes.length > 0) {
      console.log(
        `\n${table(
          ['ROUTE', 'STATE', 'WEIGHT', 'LAST HEALTH', 'REASON'],
          routes.map((r) => [
            r.id,
            r.state,
            String(r.weight),
            r.last_health ? `${r.last_health.class} ${age(r.last_health.at)} ago` : '-',
            r.last_health?.reason || r.reason || '',
          ]),
        )}`,
      );
    }
    if (events.length > 0) {
      console.log(
        `\n${eventsHeading(events.length, totalEvents)}\n${table(
          ['AGE', 'ACTOR', 'FROM', 'TO', 'REASON'],
          events.map((e) => [
            age(e.at),
            e.actor_id,
            e.from_state ?? '-',
            e.to_state,
            e.reason ?? '',
          ]),
        )}`,
      );
    }
    return 0;
  });
}
