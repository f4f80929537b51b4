/** Prints a scenario's figures and rewrites its rows in docs/reliability.md (between markers). */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { type Figures, markdownTable } from './figures.ts';

export const BEGIN = '<!-- faults:table:begin -->';
export const END = '<!-- faults:table:end -->';

export function printFigures(f: Figures): void {
  console.log(`\n== ${f.scenario} — ${f.variant} (${(f.durationMs / 1000).toFixed(0)} s)`);
  console.log(markdownTable([f]));
  for (const n of f.notes) console.log(`  - ${n}`);
  for (const v of f.violations.slice(0, 20)) console.log(`  ! ${v}`);
  if (f.violations.length > 20) console.log(`  ! ... ${f.violations.length - 20} more`);
}

/**
 * The block between the markers: the table, then each row's notes and violations, then how
 * the run was made (seed, mode, duration). The whole block is replaced: it shows one run.
 */
export function writeReport(
  path: string,
  rows: readonly Figures[],
  run: { seed: number; quick: boolean; command: string; durationMs: number; date: string },
): void {
  const text = existsSync(path) ? readFileSync(path, 'utf8') : `${BEGIN}\n${END}\n`;
  const b = text.indexOf(BEGIN);
  const e = text.indexOf(END);
  if (b < 0 || e < b) throw new Error(`${path}: markers ${BEGIN} / ${END} not found`);
  const details = rows.flatMap((f) => [
    '',
    `**${f.scenario} — ${f.variant}** (${(f.durationMs / 1000).toFixed(0)} s)`,
    '',
    ...f.notes.map((n) => `- ${n}`),
    ...f.violations.slice(0, 10).map((v) => `- VIOLATION: ${v}`),
    ...(f.violations.length > 10 ? [`- … ${f.violations.length - 10} more violations`] : []),
  ]);
  const block = [
    BEGIN,
    '',
    `Run: \`${run.command}\` — seed ${run.seed}, ${run.quick ? 'quick' : 'full'} mode, ${(run.durationMs / 60_000).toFixed(1)} min, ${run.date} (2 shared cores, loaded by other work).`,
    '',
    markdownTable(rows),
    ...details,
    '',
    END,
  ].join('\n');
  writeFileSync(path, text.slice(0, b) + block + text.slice(e + END.length));
}
