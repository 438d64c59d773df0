/**
 * Chaos row: batches whose input or output names what the caller may not:
 * file:///etc/passwd, a path with `..`, a symbolic link out of the root, and
 * another tenant's prefix of a bucket (a key granted gs://<bucket>/{tenant}/,
 * against the GCS JSON-API stand-in). Must hold: 400/403 naming the field;
 * nothing read (no request reaches the stand-in, no batch or control job is
 * made) and nothing written (no file appears under the work directory, the
 * prefix's keys are unchanged).
 */
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import OpenAI from 'openai';
import { startFleet } from '../../helpers/fleet.ts';
import { diffSnapshots, snapshotPrefix } from '../../helpers/redis-snapshot.ts';
import { startStandIn } from '../../helpers/storage/stand-in.ts';
import type { ChaosEnv, ChaosRow, RowResult } from '../types.ts';

const KEY = 'chaos-acme-key-0123456789abc';

async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

async function run(env: ChaosEnv): Promise<RowResult> {
  const bucket = `chaos-${env.prefix.replace(/[^a-z0-9]/g, '').slice(-12)}`;
  const standIn = await startStandIn('gcs', { buckets: [bucket] });
  // The work directory is under the test root; `root` is the one folder this fleet's file:// may name.
  const root = join(env.workDir, 'root');
  const outside = join(env.workDir, 'outside');
  await mkdir(root, { recursive: true });
  await mkdir(outside, { recursive: true });
  await writeFile(join(outside, 'secret.jsonl'), '{"custom_id":"s","method":"POST","url":"/v1/infer","body":{}}\n');
  await symlink(outside, join(root, 'link-out'));
  await writeFile(join(root, 'in.jsonl'), '{"custom_id":"a","method":"POST","url":"/v1/infer","body":{"input":"x"}}\n');
  const fleet = await startFleet({
    yaml: `pools: [{ name: p, backend: echo }]\nstorage: { gcs: { apiEndpoint: "${standIn.url}", auth: none } }`,
    workers: 0,
    env: {
      REDIS_URL: env.redisUrl,
      INTERFLEET_PREFIX: env.prefix,
      INTERFLEET_FILE_ROOTS: root,
      INTERFLEET_API_KEYS: `keys:\n  - { id: acme, key: ${KEY}, tenant: acme, scopes: [batch, read], storage: ['gs://${bucket}/{tenant}/'] }\n`,
    },
  });
  const client = new OpenAI({ baseURL: `${fleet.producer.url}/v1`, apiKey: KEY, maxRetries: 0 });
  const create = (input: string, output?: string) =>
    client.batches
      .create({
        input_file_id: input,
        endpoint: '/v1/infer',
        completion_window: '24h',
        model: 'p',
        ...(output !== undefined && { output_location: output }),
      } as unknown as OpenAI.Batches.BatchCreateParams)
      .then(
        () => ({ status: 200, param: null as string | null }),
        (err: { status?: number; param?: string | null }) => ({ status: err.status ?? -1, param: err.param ?? null }),
      );
  try {
    const cases: { what: string; input: string; output?: string; want: number; param: string }[] = [
      { what: 'input file:///etc/passwd', input: 'file:///etc/passwd', want: 403, param: 'input_file_id' },
      {
        what: 'input with ..',
        input: `${pathToFileURL(root).href}/../outside/secret.jsonl`,
        want: 400,
        param: 'input_file_id',
      },
      {
        what: 'input through a link out',
        input: pathToFileURL(join(root, 'link-out', 'secret.jsonl')).href,
        want: 403,
        param: 'input_file_id',
      },
      {
        what: 'output file:///etc/',
        input: pathToFileURL(join(root, 'in.jsonl')).href,
        output: 'file:///etc/interfleet-chaos/',
        want: 403,
        param: 'output_location',
      },
      {
        what: 'output through a link out',
        input: pathToFileURL(join(root, 'in.jsonl')).href,
        output: `${pathToFileURL(join(root, 'link-out')).href}/out/`,
        want: 403,
        param: 'output_location',
      },
      { what: "another tenant's prefix", input: `gs://${bucket}/globex/in.jsonl`, want: 403, param: 'input_file_id' },
      {
        what: 'a bucket not granted',
        input: 'gs://someone-elses-bucket/acme/in.jsonl',
        want: 403,
        param: 'input_file_id',
      },
    ];
    const filesBefore = await filesUnder(env.workDir);
    const keysBefore = await snapshotPrefix(fleet.redis, fleet.prefix);
    const requestsBefore = Object.values(await standIn.counts()).reduce((a, b) => a + b, 0);
    const results = [];
    for (const c of cases) results.push({ ...c, got: await create(c.input, c.output) });
    // Anything queued would be planned by the control worker within a moment: give it the chance to show.
    await new Promise((r) => setTimeout(r, 1000));
    const requests = Object.values(await standIn.counts()).reduce((a, b) => a + b, 0) - requestsBefore;
    const filesAfter = await filesUnder(env.workDir);
    const written = filesAfter.filter((f) => !filesBefore.includes(f));
    const changed = diffSnapshots(keysBefore, await snapshotPrefix(fleet.redis, fleet.prefix)).filter(
      (line) => !line.includes(':ratelimit:'),
    );
    const wrong = results.filter((r) => r.got.status !== r.want || r.got.param !== r.param);
    return {
      load: `${cases.length} batch submissions through the openai client with a key granted gs://<bucket>/{tenant}/`,
      lost: 0,
      duplicated: 0,
      recoveryMs: null,
      holds: wrong.length === 0 && requests === 0 && written.length === 0 && changed.length === 0,
      detail:
        results
          .map(
            (r) =>
              `${r.what} ${r.got.status} ${r.got.param ?? '-'}${r.got.status === r.want ? '' : ` (want ${r.want})`}`,
          )
          .join('; ') +
        `; requests to the bucket stand-in ${requests}; files written ${written.length}; keys changed under the prefix ${changed.length}`,
    };
  } finally {
    await fleet.stop();
    await standIn.close();
  }
}

export const row: ChaosRow = {
  id: 'storage-names',
  fault:
    "batch input or output naming file:///etc/…, a path with `..`, a symlink out of a root, another tenant's bucket",
  mustHold: '400/403; nothing read, nothing written',
  run,
};
