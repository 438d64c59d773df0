/**
 * A small hand-written SVG scatter plot (no plotting dependency): one
 * labelled point per setup, a horizontal objective line, a linear x axis and
 * a log-scale y axis (latencies of the setups differ by orders of magnitude).
 */

export interface ScatterPoint {
  label: string;
  x: number;
  y: number;
  /** Drawn hollow: the value is a lower bound (requests unanswered at the end). */
  lowerBound?: boolean;
}

export interface ScatterSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  points: readonly ScatterPoint[];
  /** A horizontal line (e.g. the objective), with its label. */
  hline?: { y: number; label: string };
}

const W = 720;
const H = 440;
const M = { left: 80, right: 30, top: 40, bottom: 60 };

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const num = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(1));

/** 1, 2, 5 × 10^k ticks covering [lo, hi]. */
export function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let k = Math.floor(Math.log10(lo)); k <= Math.ceil(Math.log10(hi)); k++) {
    for (const m of [1, 2, 5]) {
      const t = m * 10 ** k;
      if (t >= lo && t <= hi) ticks.push(t);
    }
  }
  return ticks;
}

function fmtTick(ms: number): string {
  return ms >= 1000 ? `${num(ms / 1000)} s` : `${num(ms)} ms`;
}

export function scatterSvg(spec: ScatterSpec): string {
  const ys = [...spec.points.map((p) => p.y), ...(spec.hline ? [spec.hline.y] : [])].filter((y) => y > 0);
  const yLo = 10 ** Math.floor(Math.log10(Math.min(...ys)));
  const yHi = 10 ** Math.ceil(Math.log10(Math.max(...ys) * 1.01));
  const xHi = Math.max(1.1, Math.ceil(Math.max(...spec.points.map((p) => p.x)) * 10 + 0.5) / 10);
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (x: number) => M.left + (x / xHi) * pw;
  const sy = (y: number) => M.top + ph - ((Math.log10(y) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(spec.title)}</text>`,
  ];
  for (let x = 0; x <= xHi + 1e-9; x += 0.1) {
    const X = sx(x).toFixed(1);
    const major = Math.abs(x * 5 - Math.round(x * 5)) < 1e-6;
    out.push(`<line x1="${X}" y1="${M.top}" x2="${X}" y2="${M.top + ph}" stroke="#eee"/>`);
    if (major) out.push(`<text x="${X}" y="${M.top + ph + 18}" text-anchor="middle">${Math.round(x * 100)} %</text>`);
  }
  for (const t of logTicks(yLo, yHi)) {
    const Y = sy(t).toFixed(1);
    out.push(`<line x1="${M.left}" y1="${Y}" x2="${M.left + pw}" y2="${Y}" stroke="#eee"/>`);
    out.push(`<text x="${M.left - 6}" y="${Y}" text-anchor="end" dominant-baseline="middle">${fmtTick(t)}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 16}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  out.push(
    `<text transform="translate(18 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yLabel)}</text>`,
  );
  if (spec.hline) {
    const Y = sy(spec.hline.y).toFixed(1);
    out.push(`<line x1="${M.left}" y1="${Y}" x2="${M.left + pw}" y2="${Y}" stroke="#c00" stroke-dasharray="6 4"/>`);
    out.push(
      `<text x="${M.left + pw - 4}" y="${Number(Y) - 5}" text-anchor="end" fill="#c00">${esc(spec.hline.label)}</text>`,
    );
  }
  for (const p of spec.points) {
    const X = sx(p.x).toFixed(1);
    const Y = sy(Math.max(p.y, yLo)).toFixed(1);
    const fill = p.lowerBound ? 'white' : '#1f5fa8';
    out.push(`<circle cx="${X}" cy="${Y}" r="5" fill="${fill}" stroke="#1f5fa8" stroke-width="2"/>`);
    const label = p.lowerBound ? `${p.label} (≥)` : p.label;
    out.push(`<text x="${Number(X) + 8}" y="${Number(Y) - 8}">${esc(label)}</text>`);
  }
  out.push('</svg>', '');
  return out.join('\n');
}
