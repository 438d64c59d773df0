/**
 * How the CLI writes batches for people: a summary of one batch and a table
 * of many. `--json` prints the API's objects instead. Pure.
 */
import type { ApiBatch, BatchList } from '../../common/contracts/batch-api.ts';

const iso = (seconds: number | null): string => (seconds === null ? '-' : new Date(seconds * 1000).toISOString());

/** Several lines describing one batch; files only once they exist. */
export function formatBatch(b: ApiBatch): string {
  const { total, completed, failed } = b.request_counts;
  const rows: Array<[string, string]> = [
    ['status', b.status],
    ['model', `${b.model} (${b.endpoint}), tenant ${b.tenant}, priority ${b.priority}`],
    ['input', b.input_file],
    ['output to', b.output_location],
    ['requests', `${total} total, ${completed} completed, ${failed} failed`],
    ['chunks', `${b.progress.chunks_done}/${b.progress.chunks_total}`],
    ['created', `${iso(b.created_at)} (${b.source})`],
    ['expires', iso(b.expires_at)],
  ];
  const ended = b.completed_at ?? b.failed_at ?? b.expired_at ?? b.cancelled_at;
  if (ended !== null) rows.push(['ended', iso(ended)]);
  if (b.output_file) rows.push(['output', b.output_file]);
  if (b.error_file) rows.push(['errors', b.error_file]);
  if (b.manifest_file) rows.push(['manifest', b.manifest_file]);
  if (b.metadata && Object.keys(b.metadata).length > 0) {
    rows.push([
      'metadata',
      Object.entries(b.metadata)
        .map(([k, v]) => `${k}=${v}`)
        .join(', '),
    ]);
  }
  const lines = [b.id, ...rows.map(([k, v]) => `  ${k.padEnd(10)} ${v}`)];
  for (const e of b.errors?.data ?? []) {
    lines.push(`  ! ${e.code}: ${e.message}${e.line !== null ? ` (line ${e.line})` : ''}`);
  }
  return lines.join('\n');
}

/** One row per batch, newest first, and how to get the next page. */
export function formatBatchList(page: BatchList, nextCommand: (after: string) => string): string {
  if (page.data.length === 0) return 'no batches';
  const header = ['ID', 'STATUS', 'MODEL', 'LINES DONE', 'CREATED'];
  const rows = page.data.map((b) => [
    b.id,
    b.status,
    b.model,
    `${b.progress.lines_done}/${b.request_counts.total}`,
    iso(b.created_at),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [fmt(header), ...rows.map(fmt)];
  if (page.has_more && page.last_id !== null) out.push(`more: ${nextCommand(page.last_id)}`);
  return out.join('\n');
}
