/** What each scenario reports: one row of the table in docs/reliability.md. */
export interface Figures {
  scenario: string;
  /** Topology or variant, e.g. "all-in-one", "separate proxies". */
  variant: string;
  runs: number;
  faultsInjected: number;
  requestsSent: number;
  requestsFailed: number;
  /** Requests sent / failed inside the fault windows only (fault to recovery). */
  windowSent: number;
  windowFailed: number;
  commandsAcknowledged: number;
  acknowledgedLost: number;
  duplicateReplicas: number;
  orphanReplicas: number;
  /** Time to recover, ms (scenario-specific definition, written in `notes`). */
  recoverMs: number[];
  /** Checks that failed, one line each (empty: every invariant held). */
  violations: string[];
  /** Other measured values, printed and written after the table. */
  notes: string[];
  /** Markdown lines (e.g. a per-fault table) written after the notes; optional. */
  tables?: string[];
  /** Files written beside docs/reliability.md with the table (e.g. a chart); optional. */
  files?: Record<string, string>;
  durationMs: number;
}

export function emptyFigures(scenario: string, variant: string): Figures {
  return {
    scenario,
    variant,
    runs: 0,
    faultsInjected: 0,
    requestsSent: 0,
    requestsFailed: 0,
    windowSent: 0,
    windowFailed: 0,
    commandsAcknowledged: 0,
    acknowledgedLost: 0,
    duplicateReplicas: 0,
    orphanReplicas: 0,
    recoverMs: [],
    violations: [],
    notes: [],
    durationMs: 0,
  };
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i] as number;
}

const ms = (x: number) =>
  Number.isNaN(x) ? '–' : x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`;

export function pct(failed: number, sent: number): string {
  return sent === 0 ? '–' : `${((100 * failed) / sent).toFixed(2)}%`;
}

export const TABLE_HEADER = [
  'scenario',
  'variant',
  'runs',
  'faults injected',
  'requests sent',
  'requests failed',
  'failed in fault windows',
  'acknowledged commands lost',
  'duplicate / orphan replicas',
  'time to recover p50 / max',
  'invariants',
];

export function tableRow(f: Figures): string[] {
  return [
    f.scenario,
    f.variant,
    String(f.runs),
    String(f.faultsInjected),
    String(f.requestsSent),
    `${f.requestsFailed} (${pct(f.requestsFailed, f.requestsSent)})`,
    `${f.windowFailed} of ${f.windowSent} (${pct(f.windowFailed, f.windowSent)})`,
    `${f.acknowledgedLost} of ${f.commandsAcknowledged}`,
    `${f.duplicateReplicas} / ${f.orphanReplicas}`,
    `${ms(percentile(f.recoverMs, 50))} / ${ms(f.recoverMs.length ? Math.max(...f.recoverMs) : Number.NaN)}`,
    f.violations.length === 0 ? 'held' : `**${f.violations.length} violated**`,
  ];
}

export function markdownTable(rows: readonly Figures[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [
    line(TABLE_HEADER),
    line(TABLE_HEADER.map(() => '---')),
    ...rows.map((r) => line(tableRow(r))),
  ].join('\n');
}
