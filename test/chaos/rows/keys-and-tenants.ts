/**
 * Chaos row: callers without a key, with a wrong one, reaching for another
 * tenant's batch, and Bull Board without a key, against a real producer with
 * API keys on. Must hold: 401 / 401 / 404 (the same body as a missing batch)
 * / 401 with a Basic challenge, and nothing under the prefix changes.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import OpenAI from 'openai';
import { startFleet } from '../../helpers/fleet.ts';
import { diffSnapshots, snapshotPrefix } from '../../helpers/redis-snapshot.ts';
import type { ChaosEnv, ChaosRow, RowResult } from '../types.ts';

const KEYS = { a: 'chaos-team-a-key-0123456789', b: 'chaos-team-b-key-0123456789' };
const keysYaml = `
keys:
  - { id: team-a, key: ${KEYS.a}, tenant: team-a, scopes: [infer, batch, read] }
  - { id: team-b, key: ${KEYS.b}, tenant: team-b, scopes: [infer, batch, read] }
`;

interface Probe {
  what: string;
  want: number;
  got: number;
  ok: boolean;
}

async function run(env: ChaosEnv): Promise<RowResult> {
  const fleet = await startFleet({
    yaml: 'pools:\n  - name: p\n    backend: echo\n',
    workers: 0,
    env: { REDIS_URL: env.redisUrl, INTERFLEET_PREFIX: env.prefix, INTERFLEET_API_KEYS: keysYaml },
  });
  const url = fleet.producer.url;
  const client = (apiKey: string) => new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });
  const status = (p: Promise<unknown>) =>
    p.then(
      () => 200,
      (err: unknown) => (err as { status?: number }).status ?? -1,
    );
  try {
    const input = join(env.workDir, 'keys-in.jsonl');
    await writeFile(input, '{"custom_id":"a","method":"POST","url":"/v1/infer","body":{"input":"x"}}\n');
    const batchBody = {
      input_file_id: pathToFileURL(input).href,
      endpoint: '/v1/infer' as '/v1/chat/completions',
      completion_window: '24h' as const,
      model: 'p',
    } as unknown as OpenAI.Batches.BatchCreateParams;
    let theirs = await client(KEYS.b).batches.create(batchBody);
    // Let the control worker plan it first: its planning is not what this row looks for.
    for (const until = Date.now() + 15_000; theirs.status === 'validating' && Date.now() < until;) {
      await new Promise((r) => setTimeout(r, 100));
      theirs = await client(KEYS.b).batches.retrieve(theirs.id);
    }
    await new Promise((r) => setTimeout(r, 500));

    const before = await snapshotPrefix(fleet.redis, fleet.prefix);
    const probes: Probe[] = [];
    const probe = async (what: string, want: number, answer: Promise<number>) => {
      const got = await answer;
      probes.push({ what, want, got, ok: got === want });
    };
    const noKey = new OpenAI({
      baseURL: `${url}/v1`,
      apiKey: 'unsent',
      maxRetries: 0,
      defaultHeaders: { Authorization: null },
    });
    const chat = { model: 'p', messages: [{ role: 'user' as const, content: 'hi' }] };
    await probe('chat, no key', 401, status(noKey.chat.completions.create(chat)));
    await probe('chat, wrong key', 401, status(client('not-a-key-0123456789').chat.completions.create(chat)));
    await probe('batch create, no key', 401, status(noKey.batches.create(batchBody)));
    await probe('batch create, wrong key', 401, status(client('not-a-key-0123456789').batches.create(batchBody)));
    await probe("other tenant's batch: retrieve", 404, status(client(KEYS.a).batches.retrieve(theirs.id)));
    await probe("other tenant's batch: cancel", 404, status(client(KEYS.a).batches.cancel(theirs.id)));
    const missing = await fetch(`${url}/v1/batches/batch_00000000000000000000`, {
      headers: { authorization: `Bearer ${KEYS.a}` },
    });
    const hidden = await fetch(`${url}/v1/batches/${theirs.id}`, { headers: { authorization: `Bearer ${KEYS.a}` } });
    const sameBody =
      JSON.stringify(await hidden.json()).replace(theirs.id, 'X') ===
      JSON.stringify(await missing.json()).replace('batch_00000000000000000000', 'X');
    const listed = await client(KEYS.a).batches.list();
    const leaked = listed.data.filter((b) => b.id === theirs.id).length;
    const board = await fetch(`${url}/admin/queues/api/queues`);
    const challenge = board.headers.get('www-authenticate') ?? '';
    probes.push({ what: 'Bull Board, no key', want: 401, got: board.status, ok: board.status === 401 });
    const boardWrong = await fetch(`${url}/admin/queues/api/queues`, {
      headers: { authorization: `Basic ${Buffer.from('x:not-a-key').toString('base64')}` },
    });
    probes.push({ what: 'Bull Board, wrong key', want: 401, got: boardWrong.status, ok: boardWrong.status === 401 });

    const changed = diffSnapshots(before, await snapshotPrefix(fleet.redis, fleet.prefix)).filter(
      // The rate limiter counts every authenticated request; that is the point of it, not a leak.
      (line) => !line.includes(':ratelimit:'),
    );
    for (const line of changed.slice(0, 10)) env.log(`changed under the prefix: ${line}`);
    const failed = probes.filter((p) => !p.ok);
    const holds = failed.length === 0 && sameBody && leaked === 0 && /^Basic /.test(challenge) && changed.length === 0;
    return {
      load: `${probes.length} requests: openai client with no key and a wrong key, another tenant's batch, Bull Board`,
      lost: 0,
      duplicated: 0,
      recoveryMs: null,
      holds,
      detail:
        probes.map((p) => `${p.what} ${p.got}${p.ok ? '' : ` (want ${p.want})`}`).join('; ') +
        `; hidden batch body same as a missing one: ${sameBody ? 'yes' : 'NO'}; in team-a's list: ${leaked}` +
        `; Board challenge: ${challenge || 'none'}; keys changed under the prefix: ${changed.length}`,
    };
  } finally {
    await fleet.stop();
  }
}

export const row: ChaosRow = {
  id: 'keys-and-tenants',
  fault: "no key / wrong key / other tenant's batch / Bull Board without a key",
  mustHold: '401 / 401 / 404 / 401',
  run,
};
