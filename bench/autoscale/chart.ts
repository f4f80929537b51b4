/**
 * A hand-written SVG chart of one bench/autoscale run: replicas (target and HEALTHY) and the
 * client's concurrency on top, p50/p99 latency below, the phases shaded, on one time axis.
 */

export interface Sample {
  /** Seconds since the run began. */
  t: number;
  phase: string;
  target: number;
  healthy: number;
  /** Requests the load generator has open. */
  load: number;
  p50: number | null;
  p99: number | null;
  rejected: number;
}

const W = 900;
const PANEL_H = 200;
const GAP = 40;
const LEFT = 60;
const RIGHT = 170;
const TOP = 40;
const PHASE_FILL: Record<string, string> = {
  idle: '#f4f4f4',
  step: '#fde8d7',
  plateau: '#fde8d7',
  drop: '#e3effb',
  'to-zero': '#f4f4f4',
  activation: '#e6f5e6',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const f1 = (n: number) => n.toFixed(1);

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

export function renderChart(opts: { title: string; samples: Sample[]; notes: string[] }): string {
  const { samples } = opts;
  const tMax = Math.max(1, ...samples.map((s) => s.t));
  const x = (t: number) => LEFT + (t / tMax) * (W - LEFT - RIGHT);
  const top1 = TOP;
  const top2 = TOP + PANEL_H + GAP;
  // Whole replicas: a multiple of 4 so the four grid steps are integers.
  const rMax = 4 * Math.ceil(Math.max(2, ...samples.map((s) => Math.max(s.target, s.healthy))) / 4);
  const loadMax = niceMax(Math.max(1, ...samples.map((s) => s.load)));
  const latMax = niceMax(Math.max(1, ...samples.map((s) => Math.max(s.p50 ?? 0, s.p99 ?? 0))));
  const y1 = (v: number, max: number) => top1 + PANEL_H - (v / max) * PANEL_H;
  const y2 = (v: number) => top2 + PANEL_H - (v / latMax) * PANEL_H;
  const H = top2 + PANEL_H + 60 + opts.notes.length * 16;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11" role="img">`,
    `<title>${esc(opts.title)}</title>`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${LEFT}" y="20" font-size="14" font-weight="bold">${esc(opts.title)}</text>`,
  );
  // Phase bands across both panels.
  let start = 0;
  for (let i = 1; i <= samples.length; i++) {
    const cur = samples[i];
    const prev = samples[i - 1]!;
    if (cur && cur.phase === prev.phase) continue;
    const t0 = samples[start]!.t;
    const t1 = cur ? cur.t : prev.t;
    const fill = PHASE_FILL[prev.phase] ?? '#f8f8f8';
    for (const top of [top1, top2]) {
      out.push(
        `<rect x="${f1(x(t0))}" y="${top}" width="${f1(Math.max(0, x(t1) - x(t0)))}" height="${PANEL_H}" fill="${fill}"/>`,
      );
    }
    out.push(`<text x="${f1(x(t0) + 2)}" y="${top1 + 12}" fill="#888">${esc(prev.phase)}</text>`);
    start = i;
  }
  const axis = (top: number, max: number, unit: string) => {
    out.push(
      `<rect x="${LEFT}" y="${top}" width="${W - LEFT - RIGHT}" height="${PANEL_H}" fill="none" stroke="#999"/>`,
    );
    for (let k = 0; k <= 4; k++) {
      const v = (max * k) / 4;
      const yy = top + PANEL_H - (k / 4) * PANEL_H;
      out.push(
        `<line x1="${LEFT - 4}" x2="${LEFT}" y1="${f1(yy)}" y2="${f1(yy)}" stroke="#999"/>`,
        `<text x="${LEFT - 6}" y="${f1(yy + 4)}" text-anchor="end">${Number.isInteger(v) ? v : v.toFixed(1)}</text>`,
      );
    }
    out.push(
      `<text x="14" y="${top + PANEL_H / 2}" transform="rotate(-90 14 ${top + PANEL_H / 2})" text-anchor="middle">${esc(unit)}</text>`,
    );
  };
  axis(top1, rMax, 'replicas');
  axis(top2, latMax, 'latency (ms)');
  // Time ticks under the lower panel.
  const step = niceMax(tMax / 8);
  for (let t = 0; t <= tMax + 1e-9; t += step) {
    out.push(
      `<line x1="${f1(x(t))}" x2="${f1(x(t))}" y1="${top2 + PANEL_H}" y2="${top2 + PANEL_H + 4}" stroke="#999"/>`,
      `<text x="${f1(x(t))}" y="${top2 + PANEL_H + 16}" text-anchor="middle">${Math.round(t)} s</text>`,
    );
  }
  const path = (pts: Array<[number, number]>, color: string, width = 1.5, stepped = false) => {
    if (pts.length === 0) return;
    let d = `M${f1(pts[0]![0])},${f1(pts[0]![1])}`;
    for (let i = 1; i < pts.length; i++) {
      const [px, py] = pts[i]!;
      if (stepped) d += ` H${f1(px)} V${f1(py)}`;
      else d += ` L${f1(px)},${f1(py)}`;
    }
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="${width}"/>`);
  };
  // Load on the replicas panel, scaled to its own maximum (right-hand labels).
  path(
    samples.map((s) => [x(s.t), y1(s.load, loadMax)]),
    '#bbbbbb',
    1,
  );
  path(
    samples.map((s) => [x(s.t), y1(s.target, rMax)]),
    '#1f77b4',
    2,
    true,
  );
  path(
    samples.map((s) => [x(s.t), y1(s.healthy, rMax)]),
    '#2ca02c',
    2,
    true,
  );
  for (const s of samples) {
    if (s.rejected > 0) {
      out.push(
        `<circle cx="${f1(x(s.t))}" cy="${f1(top1 + PANEL_H - 3)}" r="2.5" fill="#d62728"/>`,
      );
    }
  }
  // Latency lines break where a sample saw no completed request.
  const lat = (key: 'p50' | 'p99', color: string) => {
    let run: Array<[number, number]> = [];
    for (const s of samples) {
      const v = s[key];
      if (v === null) {
        path(run, color, 1.5);
        run = [];
      } else run.push([x(s.t), y2(v)]);
    }
    path(run, color, 1.5);
  };
  lat('p50', '#9467bd');
  lat('p99', '#ff7f0e');
  const legend: Array<[string, string]> = [
    ['#1f77b4', 'target replicas'],
    ['#2ca02c', 'HEALTHY replicas'],
    ['#bbbbbb', `client concurrency (0-${loadMax})`],
    ['#d62728', 'rejections (any non-200)'],
    ['#9467bd', 'p50 latency'],
    ['#ff7f0e', 'p99 latency'],
  ];
  legend.forEach(([c, label], i) => {
    const ly = TOP + 10 + i * 16;
    out.push(
      `<rect x="${W - RIGHT + 8}" y="${ly - 8}" width="10" height="10" fill="${c}"/>`,
      `<text x="${W - RIGHT + 22}" y="${ly + 1}">${esc(label)}</text>`,
    );
  });
  opts.notes.forEach((n, i) => {
    out.push(`<text x="${LEFT}" y="${top2 + PANEL_H + 36 + i * 16}">${esc(n)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
