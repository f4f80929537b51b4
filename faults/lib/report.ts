/** Prints a scenario's figures and rewrites its rows in docs/reliability.md (between markers). */

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, resolve } from 'node:path';
import { type Figures, markdownTable } from './figures.ts';

export const BEGIN = '<!-- faults:table:begin -->';
export const END = '<!-- faults:table:end -->';

export function printFigures(f: Figures): void {
  console.log(`\n== ${f.scenario} — ${f.variant} (${(f.durationMs / 1000).toFixed(0)} s)`);
  console.log(markdownTable([f]));
  for (const n of f.notes) console.log(`  - ${n}`);
  if (f.tables?.length) console.log(f.tables.join('\n'));
  for (const v of f.violations.slice(0, 20)) console.log(`  ! ${v}`);
  if (f.violations.length > 20) console.log(`  ! ... ${f.violations.length - 20} more`);
}

/**
 * The block between the markers: the table, then each row's notes and violations, then how
 * the runs were made (seed, mode, duration). Rows are merged by scenario and variant through
 * docs/reliability.json: a run of some scenarios keeps the others' latest rows.
 */
export function writeReport(
  path: string,
  fresh: readonly Figures[],
  thisRun: {
    seed: number;
    quick: boolean;
    command: string;
    durationMs: number;
    date: string;
    /** 1-minute load average at the start and the highest sampled during the run. */
    load?: { start: number; max: number };
  },
): void {
  // Rows of scenarios not run this time are kept (from the JSON beside the document).
  const jsonPath = path.replace(/\.md$/, '.json');
  type Stored = { rows: Array<Figures & { run: typeof thisRun }> };
  const stored: Stored = existsSync(jsonPath)
    ? (JSON.parse(readFileSync(jsonPath, 'utf8')) as Stored)
    : { rows: [] };
  const key = (f: Figures) => `${f.scenario}|${f.variant}`;
  const freshKeys = new Set(fresh.map(key));
  const all = [
    ...stored.rows.filter((r) => !freshKeys.has(key(r))),
    ...fresh.map(({ files: _files, ...f }) => ({ ...f, run: thisRun })),
  ].sort((a, b) => a.scenario.localeCompare(b.scenario, 'en', { numeric: true }));
  writeFileSync(jsonPath, `${JSON.stringify({ rows: all }, null, 2)}\n`);
  for (const f of fresh)
    for (const [name, content] of Object.entries(f.files ?? {}))
      writeFileSync(resolve(dirname(path), name), content);
  // In the repository's format, so `npm run lint` stays clean after a run.
  try {
    execFileSync(
      process.execPath,
      [
        resolve(import.meta.dirname, '../../node_modules/@biomejs/biome/bin/biome'),
        'format',
        '--write',
        jsonPath,
      ],
      { stdio: 'ignore' },
    );
  } catch {
    // Formatting is cosmetic.
  }
  const rows = all;
  const runs = [...new Map(all.map((r) => [`${r.run.command}|${r.run.date}`, r.run])).values()];
  const text = existsSync(path) ? readFileSync(path, 'utf8') : `${BEGIN}\n${END}\n`;
  const b = text.indexOf(BEGIN);
  const e = text.indexOf(END);
  if (b < 0 || e < b) throw new Error(`${path}: markers ${BEGIN} / ${END} not found`);
  const details = rows.flatMap((f) => [
    '',
    `**${f.scenario} — ${f.variant}** (${(f.durationMs / 1000).toFixed(0)} s, seed ${f.run.seed})`,
    '',
    ...f.notes.map((n) => `- ${n}`),
    ...f.violations.slice(0, 10).map((v) => `- VIOLATION: ${v}`),
    ...(f.violations.length > 10 ? [`- … ${f.violations.length - 10} more violations`] : []),
    ...(f.tables?.length ? ['', ...f.tables] : []),
  ]);
  const block = [
    BEGIN,
    '',
    ...runs.map(
      (run) =>
        `Run: \`${run.command}\` — seed ${run.seed}, ${run.quick ? 'quick' : 'full'} mode, ${(run.durationMs / 60_000).toFixed(1)} min, ${run.date} (${machineNote(run.load)}).  `,
    ),
    '',
    markdownTable(rows),
    ...details,
    '',
    END,
  ].join('\n');
  writeFileSync(path, text.slice(0, b) + block + text.slice(e + END.length));
  // The document too (biome formats Markdown here): `npm run lint` stays clean after a run.
  try {
    execFileSync(
      process.execPath,
      [
        resolve(import.meta.dirname, '../../node_modules/@biomejs/biome/bin/biome'),
        'format',
        '--write',
        path,
      ],
      { stdio: 'ignore' },
    );
  } catch {
    // Formatting is cosmetic.
  }
}

/** What the machine was doing: runs before load was recorded keep the old wording. */
function machineNote(load: { start: number; max: number } | undefined): string {
  if (!load) return '2 shared cores, loaded by other work';
  return `${cpus().length} cores; 1-min load average ${load.start.toFixed(1)} at the start, at most ${load.max.toFixed(1)} during the run, the suite's own processes included`;
}
