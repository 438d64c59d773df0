/**
 * The replay's plot as a plain SVG string (no dependencies): three panels
 * over replay time, per minute:
 * 1. real-time load (units/s arrived) and bulk units/s done under the first
 *    policy;
 * 2. replicas: the first policy's desired (dashed) and ready (solid), and
 *    each other policy's ready replicas (thin);
 * 3. first-token p99 per minute for each policy against the objective
 *    (dashed red line; the axis is cut at 4× the objective).
 */
import type { PolicyResult } from './compare.ts';
import { minuteP99 } from './summary.ts';

const COLORS = ['#1f77b4', '#d62728', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b'];
const W = 960;
const PANEL_H = 180;
const LEFT = 64;
const RIGHT = 170;
const TOP = 30;
const GAP = 40;

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function perMinute(values: readonly number[], how: 'mean' | 'last'): number[] {
  const out: number[] = [];
  for (let i = 0; i < values.length; i += 60) {
    const slice = values.slice(i, i + 60);
    out.push(how === 'mean' ? slice.reduce((a, b) => a + b, 0) / slice.length : slice.at(-1)!);
  }
  return out;
}

function sum(a: readonly number[][]): number[] {
  const n = Math.max(0, ...a.map((x) => x.length));
  return Array.from({ length: n }, (_, i) => a.reduce((s, x) => s + (x[i] ?? 0), 0));
}

interface Line {
  values: readonly number[];
  color: string;
  width: number;
  dash?: string;
  label: string;
}

function panel(y0: number, title: string, unit: string, lines: Line[], yMax: number, extra = ''): string {
  const plotW = W - LEFT - RIGHT;
  const n = Math.max(1, ...lines.map((l) => l.values.length));
  const x = (i: number): number => LEFT + (i / Math.max(1, n - 1)) * plotW;
  const y = (v: number): number => y0 + PANEL_H - (Math.min(v, yMax) / yMax) * PANEL_H;
  const parts: string[] = [];
  parts.push(`<text x="${LEFT}" y="${y0 - 8}" font-size="13" font-weight="bold">${esc(title)}</text>`);
  parts.push(`<rect x="${LEFT}" y="${y0}" width="${plotW}" height="${PANEL_H}" fill="none" stroke="#999"/>`);
  for (let k = 0; k <= 4; k++) {
    const v = (yMax * k) / 4;
    parts.push(
      `<line x1="${LEFT}" x2="${LEFT + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`,
      `<text x="${LEFT - 6}" y="${y(v) + 4}" font-size="10" text-anchor="end">${Math.round(v).toLocaleString('en-US')}</text>`,
    );
  }
  parts.push(
    `<text x="14" y="${y0 + PANEL_H / 2}" font-size="10" transform="rotate(-90 14 ${y0 + PANEL_H / 2})" text-anchor="middle">${esc(unit)}</text>`,
  );
  for (let m = 0; m < n; m += 10) {
    parts.push(`<text x="${x(m)}" y="${y0 + PANEL_H + 12}" font-size="10" text-anchor="middle">${m}</text>`);
  }
  parts.push(extra);
  lines.forEach((l, k) => {
    const pts: string[] = [];
    const segments: string[] = [];
    l.values.forEach((v, i) => {
      if (Number.isFinite(v)) pts.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      else if (pts.length > 0) segments.push(pts.splice(0).join(' '));
    });
    if (pts.length > 0) segments.push(pts.join(' '));
    for (const seg of segments) {
      parts.push(
        `<polyline fill="none" stroke="${l.color}" stroke-width="${l.width}"${l.dash ? ` stroke-dasharray="${l.dash}"` : ''} points="${seg}"/>`,
      );
    }
    const ly = y0 + 12 + k * 14;
    parts.push(
      `<line x1="${W - RIGHT + 10}" x2="${W - RIGHT + 30}" y1="${ly - 4}" y2="${ly - 4}" stroke="${l.color}" stroke-width="${Math.max(1.5, l.width)}"${l.dash ? ` stroke-dasharray="${l.dash}"` : ''}/>`,
      `<text x="${W - RIGHT + 34}" y="${ly}" font-size="10">${esc(l.label)}</text>`,
    );
  });
  return parts.join('\n');
}

export function replaySvg(results: readonly PolicyResult[], objectiveMs: number, title: string): string {
  const main = results[0]!;
  const seconds = main.runs[0]!.series.replicas.length;
  const load = perMinute(sum(main.runs.map((r) => r.series.rtArrivedUnits)), 'mean');
  const bulk = perMinute(sum(main.runs.map((r) => r.series.bulkUnits)), 'mean');
  const desired = perMinute(sum(main.runs.map((r) => r.series.desired)), 'last');
  const readyOf = (r: PolicyResult): number[] => perMinute(sum(r.runs.map((x) => x.series.ready)), 'mean');
  const yLoad = Math.max(1, ...load, ...bulk) * 1.1;
  const replicaLines: Line[] = [
    { values: desired, color: COLORS[0]!, width: 2, dash: '5,3', label: `${main.label} desired` },
    { values: readyOf(main), color: COLORS[0]!, width: 2, label: `${main.label} ready` },
    ...results.slice(1).map((r, k) => ({
      values: readyOf(r),
      color: COLORS[(k + 1) % COLORS.length]!,
      width: 1,
      label: `${r.label} ready`,
    })),
  ];
  const yRep = Math.max(1, ...replicaLines.flatMap((l) => l.values)) + 1;
  const latency: Line[] = results.map((r, k) => ({
    values: minuteP99(r.runs, seconds),
    color: COLORS[k % COLORS.length]!,
    width: k === 0 ? 2 : 1,
    label: `${r.label} p99`,
  }));
  const yLat = objectiveMs * 4;
  const y3 = TOP + 2 * (PANEL_H + GAP) + 10;
  const objY = y3 + PANEL_H - (objectiveMs / yLat) * PANEL_H;
  const objective = `<line x1="${LEFT}" x2="${W - RIGHT}" y1="${objY}" y2="${objY}" stroke="#d62728" stroke-dasharray="2,3"/><text x="${W - RIGHT - 4}" y="${objY - 4}" font-size="10" text-anchor="end" fill="#d62728">objective ${objectiveMs} ms</text>`;
  const H = y3 + PANEL_H + 40;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${LEFT}" y="16" font-size="14" font-weight="bold">${esc(title)}</text>`,
    panel(
      TOP + 10,
      'load',
      'work units/s',
      [
        { values: load, color: '#333', width: 1.5, label: 'real-time arrived' },
        { values: bulk, color: COLORS[2]!, width: 1.5, label: `bulk done (${main.label})` },
      ],
      yLoad,
    ),
    panel(TOP + PANEL_H + GAP + 10, 'replicas', 'replicas', replicaLines, yRep),
    panel(y3, 'first-token p99 per minute (cut at 4× objective)', 'ms', latency, yLat, objective),
    `<text x="${LEFT + (W - LEFT - RIGHT) / 2}" y="${H - 8}" font-size="11" text-anchor="middle">replay minutes</text>`,
    '</svg>',
    '',
  ].join('\n');
}
