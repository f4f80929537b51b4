/**
 * The recorded history (PostgreSQL `transitions`, through `Store.history`) read for the
 * inspector: the newest row id (the live feed's starting cursor), every row of a deployment,
 * and each actor's state at a past instant rebuilt from those rows.
 */
import type { Store, TransitionRow } from '../store/store.ts';

type HistoryReader = Pick<Store, 'history'>;

/**
 * The largest history row id (of one deployment, or of all), 0 when there is none. The store
 * has no "max id" read, so this gallops then bisects on `history({ after, limit: 1 })`:
 * ≈2·log2(max id) one-row index reads, whatever the history's size.
 */
export async function lastHistoryId(store: HistoryReader, deploymentId?: string): Promise<number> {
  const any = async (after: number) =>
    (
      await store.history({
        ...(deploymentId !== undefined ? { deploymentId } : {}),
        after,
        limit: 1,
      })
    ).items[0]?.id;
  const first = await any(0);
  if (first === undefined) return 0;
  // Invariants: a row with id `lo` exists; no row has an id >= `hi`.
  let lo = first;
  let step = 1;
  let hi: number;
  while (true) {
    const n = await any(lo + step - 1);
    if (n === undefined) {
      hi = lo + step;
      break;
    }
    lo = n;
    step *= 2;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    const n = await any(mid - 1);
    if (n === undefined) hi = mid;
    else lo = n;
  }
  return lo;
}

/** Every history row of a deployment with `at <= until` (all when no bound), oldest first. */
export async function readHistory(
  store: HistoryReader,
  deploymentId: string,
  opts: { until?: number } = {},
): Promise<TransitionRow[]> {
  const out: TransitionRow[] = [];
  let after: number | undefined;
  while (true) {
    const page = await store.history({
      deploymentId,
      limit: 1000,
      ...(after !== undefined ? { after } : {}),
    });
    for (const r of page.items) {
      if (opts.until === undefined || Date.parse(r.at) <= opts.until) out.push(r);
    }
    if (page.next === null) return out;
    after = page.next;
  }
}

export interface ActorStateAt {
  actor_id: string;
  kind: TransitionRow['kind'];
  state: string;
  /** When the actor entered `state`. */
  since: string;
  /** The last row at or before the instant (a transition, or an event that changed nothing). */
  last: TransitionRow;
}

/**
 * Each actor's state at `at` (epoch ms) from its history rows: the `to_state` of its last
 * state-changing row recorded at or before `at`. Actors whose first row is later did not exist
 * yet and are left out. Rows are ordered by (at, id): a row id is a commit-order cursor, the
 * time is when the actor moved.
 */
export function statesAt(rows: readonly TransitionRow[], at: number): ActorStateAt[] {
  const sorted = rows
    .filter((r) => Date.parse(r.at) <= at)
    .sort((a, b) => Date.parse(a.at) - Date.parse(b.at) || a.id - b.id);
  const byActor = new Map<string, ActorStateAt>();
  for (const r of sorted) {
    const prev = byActor.get(r.actor_id);
    const changed = !prev || prev.state !== r.to_state;
    byActor.set(r.actor_id, {
      actor_id: r.actor_id,
      kind: r.kind,
      state: r.to_state,
      since: changed ? r.at : prev.since,
      last: r,
    });
  }
  return [...byActor.values()];
}
