/**
 * Enumerates every top-level state-to-state edge a machine can take, by walking its
 * definition: every event's transitions (all guard outcomes), eventless (`always`)
 * transitions, and invoke onDone/onError, from each top-level state and all its descendants.
 * A root-level handler counts for every top-level state that does not itself handle that
 * event without a guard. Self-edges (S -> S) are left out; tests check those by behaviour.
 */
import type { AnyStateMachine } from 'xstate';

interface NodeLike {
  key: string;
  parent?: NodeLike;
  type: string;
  states: Record<string, NodeLike>;
  transitions: Map<string, Array<{ target?: readonly NodeLike[] | undefined; guard?: unknown }>>;
  always?: Array<{ target?: readonly NodeLike[] | undefined; guard?: unknown }>;
}

export function topLevelEdges(machine: AnyStateMachine): Set<string> {
  const root = machine.root as unknown as NodeLike;
  const topOf = (n: NodeLike): string => {
    let cur = n;
    while (cur.parent && cur.parent !== root) cur = cur.parent;
    return cur.key;
  };
  const descendants = (n: NodeLike): NodeLike[] => [
    n,
    ...Object.values(n.states).flatMap((c) => descendants(c)),
  ];
  const edges = new Set<string>();
  const add = (from: string, targets: readonly NodeLike[] | undefined) => {
    for (const t of targets ?? []) {
      const to = topOf(t);
      if (to !== from) edges.add(`${from}->${to}`);
    }
  };
  for (const top of Object.values(root.states)) {
    if (top.type === 'final') continue;
    const nodes = descendants(top);
    const handledUnguarded = new Set<string>();
    for (const node of nodes) {
      for (const [eventType, ts] of node.transitions) {
        for (const t of ts) {
          add(top.key, t.target);
          if (node === top && !t.guard) handledUnguarded.add(eventType);
        }
      }
      for (const t of node.always ?? []) add(top.key, t.target);
    }
    for (const [eventType, ts] of root.transitions) {
      if (handledUnguarded.has(eventType)) continue;
      for (const t of ts) add(top.key, t.target);
    }
  }
  return edges;
}

export function edgeSet(table: ReadonlyArray<readonly [string, string]>): Set<string> {
  return new Set(table.filter(([a, b]) => a !== b).map(([a, b]) => `${a}->${b}`));
}

export function sorted(s: Set<string>): string[] {
  return [...s].sort();
}
