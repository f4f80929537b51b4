/** Plain-text output of the CLI: tables, ages, and one line per deployment change. */
import type { DeploymentView } from '../index.ts';

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** `42s`, `5m`, `3h`, `2d` since `iso`. */
export function age(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** The replica states of a deployment as `2 HEALTHY, 1 STARTING`. */
export function replicaSummary(v: DeploymentView): string {
  const counts = new Map<string, number>();
  for (const r of v.replicas) {
    if (r.state === 'TERMINATED') continue;
    counts.set(r.state, (counts.get(r.state) ?? 0) + 1);
  }
  return [...counts].map(([s, n]) => `${n} ${s}`).join(', ') || 'no replicas';
}

/** One progress line: `PROVISIONING  1/2 HEALTHY  (1 HEALTHY, 1 STARTING)`. */
export function progressLine(v: DeploymentView): string {
  const reason = v.reason && v.state !== 'RUNNING' ? `: ${v.reason}` : '';
  return `${v.name} ${v.state}  ${v.healthy_replicas}/${v.target_replicas} HEALTHY  (${replicaSummary(v)})${reason}`;
}
