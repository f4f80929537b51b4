/**
 * The exported statecharts are exactly the machines' definitions. The expectation is read
 * here independently, from each machine's raw config (`machine.config`: `states`, `on`,
 * `always`, `invoke` onDone/onError, target strings resolved as XState documents them), not
 * from the StateNode tree the exporter walks; and the top-level projection is checked against
 * the edge enumerator the machine tests use (test/harness/machine-edges.ts).
 */
import { describe, expect, it } from 'vitest';
import type { AnyStateMachine } from 'xstate';
import {
  flatStates,
  MACHINE_NAMES,
  MACHINES,
  statechart,
  toMermaid,
  toScxml,
} from '../../src/inspector/statechart.ts';
import { topLevelEdges } from '../harness/machine-edges.ts';

type Cfg = {
  id?: string;
  type?: string;
  initial?: string;
  states?: Record<string, Cfg>;
  on?: Record<string, unknown>;
  always?: unknown;
  invoke?: unknown;
};
type TCfg = { target?: string | string[]; guard?: unknown };

const list = <T>(v: T | T[] | undefined): T[] =>
  v === undefined ? [] : Array.isArray(v) ? v : [v];
const asTransitions = (v: unknown): TCfg[] =>
  list(v as TCfg | TCfg[] | string).map((t) => (typeof t === 'string' ? { target: t } : t));
const guardOf = (g: unknown): string | null => {
  if (g === undefined) return null;
  if (typeof g === 'string') return g;
  const o = g as { type: string; params?: Record<string, unknown> };
  const p = Object.entries(o.params ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  return p ? `${o.type}(${p})` : o.type;
};

/** Every state path and every targeted transition, from the raw config. */
function fromConfig(machine: AnyStateMachine) {
  const config = machine.config as Cfg;
  const states: string[] = [];
  const edges: string[] = [];
  const ids = new Map<string, string[]>();
  const collect = (cfg: Cfg, path: string[]) => {
    if (path.length > 0) states.push(path.join('.'));
    if (cfg.id) ids.set(cfg.id, path);
    for (const [k, c] of Object.entries(cfg.states ?? {})) collect(c, [...path, k]);
  };
  collect(config, []);
  ids.set(config.id ?? '', []);
  const resolve = (from: string[], target: string): string => {
    if (target.startsWith('#')) {
      const [id, ...rest] = target.slice(1).split('.');
      return [...(ids.get(id!) ?? []), ...rest].join('.');
    }
    if (target.startsWith('.')) return [...from, ...target.slice(1).split('.')].join('.');
    return [...from.slice(0, -1), ...target.split('.')].join('.');
  };
  const add = (path: string[], event: string, v: unknown, sink = edges) => {
    for (const t of asTransitions(v)) {
      for (const target of list(t.target)) {
        sink.push(`${path.join('.')} -> ${resolve(path, target)} : ${event} [${guardOf(t.guard)}]`);
      }
    }
  };
  const walk = (cfg: Cfg, path: string[]) => {
    if (path.length > 0) {
      for (const [event, v] of Object.entries(cfg.on ?? {})) add(path, event, v);
      add(path, 'always', cfg.always);
      for (const inv of list(
        cfg.invoke as Array<{ id: string; onDone?: unknown; onError?: unknown }>,
      )) {
        add(path, `xstate.done.actor.${inv.id}`, inv.onDone);
        add(path, `xstate.error.actor.${inv.id}`, inv.onError);
      }
    }
    for (const [k, c] of Object.entries(cfg.states ?? {})) walk(c, [...path, k]);
  };
  walk(config, []);
  // Root handlers: taken in every non-final top-level state that has no unguarded own handler.
  for (const [event, v] of Object.entries(config.on ?? {})) {
    for (const [k, c] of Object.entries(config.states ?? {})) {
      if (c.type === 'final') continue;
      const own = c.on?.[event];
      if (own !== undefined && asTransitions(own).some((t) => !t.guard)) continue;
      const rooted: string[] = [];
      add([], event, v, rooted);
      // A root target `.X` resolves to the child X of the root.
      for (const e of rooted) edges.push(e.replace(/^ -> /, `${k} -> `));
    }
  }
  return { states: states.sort(), edges: edges.sort() };
}

describe('statechart export', () => {
  for (const name of MACHINE_NAMES) {
    it(`${name}: the exported states and edges are exactly those of the machine's config`, () => {
      const chart = statechart(name);
      const expected = fromConfig(MACHINES[name]);
      expect(
        flatStates(chart.states)
          .map((s) => s.id)
          .sort(),
      ).toEqual(expected.states);
      const got = chart.edges.map((e) => `${e.from} -> ${e.to} : ${e.event} [${e.guard}]`).sort();
      expect(got).toEqual(expected.edges);
      expect(expected.edges.length).toBeGreaterThan(5);
    });

    it(`${name}: projected to top-level states, the edges equal the machine tests' enumeration`, () => {
      const chart = statechart(name);
      const top = (id: string) => id.split('.')[0]!;
      const projected = new Set(
        chart.edges
          .filter((e) => top(e.from) !== top(e.to))
          .map((e) => `${top(e.from)}->${top(e.to)}`),
      );
      expect([...projected].sort()).toEqual([...topLevelEdges(MACHINES[name])].sort());
    });

    it(`${name}: mermaid and SCXML name every state and every edge`, () => {
      const chart = statechart(name);
      const mermaid = toMermaid(chart);
      const scxml = toScxml(chart);
      expect(mermaid.startsWith('stateDiagram-v2\n')).toBe(true);
      const edgeLines = mermaid.split('\n').filter((l) => / --> /.test(l) && / : /.test(l));
      expect(edgeLines).toHaveLength(chart.edges.length);
      for (const s of flatStates(chart.states)) expect(scxml).toContain(`id="${s.id}"`);
      expect(scxml.match(/<transition /g)?.length).toBe(chart.edges.length);
    });
  }

  it('the deployment chart has its documented top-level states and initial state', () => {
    const chart = statechart('deployment');
    expect(chart.states.map((s) => s.id)).toEqual([
      'PENDING',
      'PROVISIONING',
      'RUNNING',
      'DESTROYING',
      'TERMINATED',
      'ERROR',
    ]);
    expect(chart.initial).toBe('PENDING');
  });
});
