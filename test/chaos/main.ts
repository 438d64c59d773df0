/**
 * npm run chaos [-- --short] [--only id,...] [--out file.md]: the fault suite. Every module in
 * test/chaos/rows/ that exports a ChaosRow (types.ts) is a row; they run one after another, each
 * with its own key prefix and temporary directory, and the table is printed (and written as
 * markdown to --out). Exits 1 when a row does not hold or fails to run. --short runs the rows
 * marked `short` in their bounded form (what CI runs).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { ChaosEnv, ChaosRow, RowResult } from './types.ts';

const here = import.meta.dirname;

function sharedDir(): string {
  const candidates = [process.env.INTERFLEET_SHARED_DIR, resolve(here, '../../../shared'), '/work/shared'];
  return candidates.find((d): d is string => !!d && existsSync(d)) ?? resolve(here, '../../../shared');
}

function isRow(value: unknown): value is ChaosRow {
  const r = value as ChaosRow;
  return !!r && typeof r.id === 'string' && typeof r.run === 'function' && typeof r.fault === 'string';
}

/** Every ChaosRow exported by a module in rows/, in file-name order. */
async function discoverRows(): Promise<ChaosRow[]> {
  const dir = join(here, 'rows');
  const rows: ChaosRow[] = [];
  for (const file of readdirSync(dir)
    .filter((f) => /\.ts$/.test(f) && !f.endsWith('.d.ts'))
    .sort()) {
    const mod = (await import(pathToFileURL(join(dir, file)).href)) as Record<string, unknown>;
    rows.push(...Object.values(mod).filter(isRow));
  }
  return rows;
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function markdown(results: { row: ChaosRow; result: RowResult; ms: number }[]): string {
  const lines = [
    '| row | fault | must hold | load held | lost | duplicated | recovery | holds | detail |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const { row, result: r } of results) {
    const recovery = r.recoveryMs === null ? '—' : `${(r.recoveryMs / 1000).toFixed(1)} s`;
    lines.push(
      `| ${row.id} | ${cell(row.fault)} | ${cell(row.mustHold)} | ${cell(r.load)} | ${r.lost} | ${r.duplicated} | ${recovery} | ${r.holds ? 'yes' : '**no**'} | ${cell(r.detail)} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { short: { type: 'boolean', default: false }, only: { type: 'string' }, out: { type: 'string' } },
  });
  const mode = values.short ? 'short' : 'full';
  const only = values.only
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  let rows = await discoverRows();
  if (only) {
    const unknown = only.filter((id) => !rows.some((r) => r.id === id));
    if (unknown.length > 0)
      throw new Error(`--only names no row: ${unknown.join(', ')} (rows: ${rows.map((r) => r.id).join(', ')})`);
    rows = rows.filter((r) => only.includes(r.id));
  } else if (mode === 'short') rows = rows.filter((r) => r.short);
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const started = Date.now();
  console.log(
    `chaos (${mode}): ${rows.map((r) => r.id).join(', ')}; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const results: { row: ChaosRow; result: RowResult; ms: number }[] = [];
  for (const row of rows) {
    const workDir = mkdtempSync(join(tmpdir(), `interfleet-chaos-${row.id}-`));
    const env: ChaosEnv = {
      redisUrl,
      prefix: `chaos-${row.id}-${randomUUID().slice(0, 8)}`,
      workDir,
      sharedDir: sharedDir(),
      mode,
      log: (m) => console.log(`  [${row.id} ${((Date.now() - t0) / 1000).toFixed(1)} s] ${m}`),
    };
    const t0 = Date.now();
    console.log(`\n▶ ${row.id}: ${row.fault}`);
    let result: RowResult;
    try {
      result = await row.run(env);
    } catch (err) {
      result = {
        load: '—',
        lost: 0,
        duplicated: 0,
        recoveryMs: null,
        holds: false,
        detail: `the row did not run to its end: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`,
      };
      console.log(err);
    }
    const ms = Date.now() - t0;
    results.push({ row, result, ms });
    console.log(
      `  ${result.holds ? 'holds' : 'DOES NOT HOLD'} (${(ms / 1000).toFixed(0)} s): lost ${result.lost}, duplicated ${result.duplicated}; ${result.detail}`,
    );
    if (result.holds && !process.env.CHAOS_KEEP) rmSync(workDir, { recursive: true, force: true });
    else console.log(`  kept ${workDir}`);
  }
  const table = markdown(results);
  console.log(
    `\n${table}\n\n${((Date.now() - started) / 1000).toFixed(0)} s in all; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  if (values.out) writeFileSync(values.out, `${table}\n`);
  const failed = results.filter((r) => !r.result.holds || r.result.lost > 0 || r.result.duplicated > 0);
  if (failed.length > 0) {
    console.log(`does not hold: ${failed.map((r) => r.row.id).join(', ')}`);
    process.exitCode = 1;
  }
}

await main();
process.exit(process.exitCode ?? 0);
