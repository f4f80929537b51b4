/**
 * Statecharts read from the machine objects themselves (machines/*.ts), never from a copy:
 * the inspector draws them, `flotilla machines` exports them, the README shows them.
 *
 * The walk goes over XState v5's StateNode tree (`machine.root`): every node's `states`, its
 * `transitions` map (which holds `on`, `after` and invoke `onDone`/`onError`, the last two
 * as `xstate.done.actor.<id>` / `xstate.error.actor.<id>`), and its eventless `always`
 * transitions. Only transitions with a target are edges; targetless ones (actions only) change
 * no state. A handler declared on the machine's root (route's `route.terminate`) applies in
 * every top-level state that does not itself handle that event without a guard, so it becomes
 * one edge from each such state, marked `inherited`.
 */
import type { AnyStateMachine } from 'xstate';
import { deploymentMachine } from '../../machines/deployment.ts';
import { replicaMachine } from '../../machines/replica.ts';
import { routeMachine } from '../../machines/route.ts';

/** One state: `id` is its path from the machine root, dot-joined (`UNHEALTHY.backoff`). */
export interface StatechartState {
  id: string;
  key: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** Id of the initial child of a compound state. */
  initial?: string;
  /** Sources of the actors this state invokes (`deadlineTimer`, `startSession`, ...). */
  invokes: string[];
  states: StatechartState[];
}

/** One transition with a target. `event` is `always` for an eventless transition. */
export interface StatechartEdge {
  from: string;
  to: string;
  event: string;
  guard: string | null;
  /** Declared on the machine root and taken from `from` because nothing there overrides it. */
  inherited?: true;
}

export interface Statechart {
  machine: string;
  initial: string;
  states: StatechartState[];
  edges: StatechartEdge[];
}

export const MACHINES = {
  deployment: deploymentMachine,
  replica: replicaMachine,
  route: routeMachine,
} as const satisfies Record<string, AnyStateMachine>;
export type MachineName = keyof typeof MACHINES;
export const MACHINE_NAMES = Object.keys(MACHINES) as MachineName[];

interface TransitionLike {
  target?: readonly NodeLike[] | undefined;
  guard?: unknown;
  eventType: string;
}

interface NodeLike {
  key: string;
  path: string[];
  type: StatechartState['type'];
  parent?: NodeLike;
  states: Record<string, NodeLike>;
  transitions: Map<string, TransitionLike[]>;
  always?: TransitionLike[];
  initial?: { target: readonly NodeLike[] };
  invoke: Array<{ src: unknown; id: string }>;
}

/**
 * The name a guard is registered under (`isValidScale`), with its params when it has some
 * (`isCleanupTarget(status=healthy)`); an inline function by its name.
 */
export function guardName(guard: unknown): string | null {
  if (guard === undefined || guard === null) return null;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') return guard.name || 'inline';
  if (typeof guard === 'object' && 'type' in guard) {
    const g = guard as { type: unknown; params?: unknown };
    const params =
      g.params && typeof g.params === 'object'
        ? Object.entries(g.params as Record<string, unknown>)
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(', ')
        : '';
    return params ? `${String(g.type)}(${params})` : String(g.type);
  }
  return 'inline';
}

const idOf = (n: NodeLike) => n.path.join('.');

function stateOf(n: NodeLike): StatechartState {
  const initial = n.type === 'compound' ? n.initial?.target[0] : undefined;
  return {
    id: idOf(n),
    key: n.key,
    type: n.type,
    ...(initial ? { initial: idOf(initial) } : {}),
    invokes: n.invoke.map((i) => (typeof i.src === 'string' ? i.src : i.id)),
    states: Object.values(n.states).map(stateOf),
  };
}

/** Reads a machine's states and edges from its definition. */
export function statechartOf(machine: AnyStateMachine): Statechart {
  const root: NodeLike = machine.root;
  const edges: StatechartEdge[] = [];
  const add = (from: string, t: TransitionLike, event: string, inherited = false) => {
    for (const target of t.target ?? []) {
      edges.push({
        from,
        to: idOf(target),
        event,
        guard: guardName(t.guard),
        ...(inherited ? { inherited: true as const } : {}),
      });
    }
  };
  const walk = (n: NodeLike) => {
    if (n !== root) {
      for (const [event, ts] of n.transitions) for (const t of ts) add(idOf(n), t, event);
      for (const t of n.always ?? []) add(idOf(n), t, 'always');
    }
    for (const c of Object.values(n.states)) walk(c);
  };
  walk(root);
  for (const [event, ts] of root.transitions) {
    for (const top of Object.values(root.states)) {
      if (top.type === 'final') continue;
      const own = top.transitions.get(event) ?? [];
      if (own.some((t) => !t.guard)) continue;
      for (const t of ts) add(idOf(top), t, event, true);
    }
  }
  const initial = root.initial?.target[0];
  return {
    machine: machine.id,
    initial: initial ? idOf(initial) : '',
    states: Object.values(root.states).map(stateOf),
    edges,
  };
}

export function statechart(name: MachineName): Statechart {
  return statechartOf(MACHINES[name]);
}

/** Every state, depth first, parents before children. */
export function flatStates(states: readonly StatechartState[]): StatechartState[] {
  return states.flatMap((s) => [s, ...flatStates(s.states)]);
}

// ------------------------------------------------------------------ exporters

export function toJson(chart: Statechart): string {
  return `${JSON.stringify(chart, null, 2)}\n`;
}

const mermaidId = (id: string) => id.replace(/[^A-Za-z0-9_]/g, '_');

function edgeLabel(e: StatechartEdge): string {
  const event = e.event.replace(/^xstate\.(done|error)\.actor\./, (_m, k: string) => `${k}: `);
  return e.guard ? `${event} [${e.guard}]` : event;
}

/** Mermaid `stateDiagram-v2`: compound states nest, every edge is labelled `event [guard]`. */
export function toMermaid(chart: Statechart): string {
  const lines = ['stateDiagram-v2'];
  const emit = (states: readonly StatechartState[], indent: string, initial: string) => {
    if (initial) lines.push(`${indent}[*] --> ${mermaidId(initial)}`);
    for (const s of states) {
      const id = mermaidId(s.id);
      if (id !== s.key) lines.push(`${indent}state "${s.key}" as ${id}`);
      if (s.states.length > 0) {
        lines.push(`${indent}state ${id} {`);
        emit(s.states, `${indent}  `, s.initial ?? '');
        lines.push(`${indent}}`);
      }
      if (s.type === 'final') lines.push(`${indent}${id} --> [*]`);
    }
  };
  emit(chart.states, '  ', chart.initial);
  for (const e of chart.edges) {
    lines.push(`  ${mermaidId(e.from)} --> ${mermaidId(e.to)} : ${edgeLabel(e)}`);
  }
  return `${lines.join('\n')}\n`;
}

const xml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * SCXML (W3C): states nest, `<final>` for final states, guards as `cond` (their names, which
 * an SCXML interpreter would have to bind). Inherited edges are written where they are
 * declared, on the `<scxml>` root's states, as one transition per state that takes them.
 */
export function toScxml(chart: Statechart): string {
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" name="${xml(chart.machine)}" initial="${xml(chart.initial)}">`,
  ];
  const byFrom = new Map<string, StatechartEdge[]>();
  for (const e of chart.edges) byFrom.set(e.from, [...(byFrom.get(e.from) ?? []), e]);
  const emit = (s: StatechartState, indent: string) => {
    const tag = s.type === 'final' ? 'final' : s.type === 'parallel' ? 'parallel' : 'state';
    const init = s.initial ? ` initial="${xml(s.initial)}"` : '';
    out.push(`${indent}<${tag} id="${xml(s.id)}"${init}>`);
    for (const src of s.invokes) out.push(`${indent}  <invoke type="xstate" src="${xml(src)}"/>`);
    for (const e of byFrom.get(s.id) ?? []) {
      const event = e.event === 'always' ? '' : ` event="${xml(e.event)}"`;
      const cond = e.guard ? ` cond="${xml(e.guard)}"` : '';
      out.push(`${indent}  <transition${event}${cond} target="${xml(e.to)}"/>`);
    }
    for (const c of s.states) emit(c, `${indent}  `);
    out.push(`${indent}</${tag}>`);
  };
  for (const s of chart.states) emit(s, '  ');
  out.push('</scxml>');
  return `${out.join('\n')}\n`;
}

export const FORMATS = ['mermaid', 'scxml', 'json'] as const;
export type StatechartFormat = (typeof FORMATS)[number];

export function exportStatechart(name: MachineName, format: StatechartFormat): string {
  const chart = statechart(name);
  if (format === 'mermaid') return toMermaid(chart);
  if (format === 'scxml') return toScxml(chart);
  return toJson(chart);
}
