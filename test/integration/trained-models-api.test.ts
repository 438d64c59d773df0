/**
 * The API's edges for results and trained models (real producer, real
 * Redis): a webhook_url without a configured secret and a bad model_name are
 * 400 naming the field; an unknown trained model is 404 at GET
 * /v1/trained-models/:name and at /v1/infer (model_not_found, input.model),
 * before anything is queued; a model whose classes are not sentiment labels
 * is 400; a job's new fields show in GET before it has a manifest.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TrainedModelRegistry } from '../../common/training/trained-model-registry.ts';
import { startFleet, type TestFleet } from '../helpers/fleet.ts';

const yaml = `
pools:
  - name: p
    backend: echo
`;
// The API checks that what the workers will pull exists before it records a job.
const dir = mkdtempSync(join(tmpdir(), 'interfleet-trained-models-api-'));
mkdirSync(join(dir, 'data'));
writeFileSync(join(dir, 'data', 'train.tsv'), 'good\t1\nbad\t0\n');
writeFileSync(join(dir, 'eval.tsv'), 'fine\t1\n');
const job = {
  pool: 'p',
  command: 'builtin:text-classifier',
  data_uri: `file://${dir}/data/`,
  checkpoint_uri: `file://${dir}/runs/1/`,
  workers: 1,
};

let unsigned: TestFleet;
let signed: TestFleet;

beforeAll(async () => {
  unsigned = await startFleet({ yaml, workers: 0 });
  signed = await startFleet({ yaml, workers: 0, env: { INTERFLEET_WEBHOOK_SECRET: 'a-secret-of-some-length' } });
});

afterAll(async () => {
  await unsigned?.stop();
  await signed?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function call(fleet: TestFleet, path: string, body?: unknown) {
  const res = await fetch(`${fleet.producer.url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    ...(body !== undefined && { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  return {
    status: res.status,
    body: (await res.json()) as { error?: { code: string; param?: string; message: string } },
  };
}

describe('results and trained models at the API', () => {
  it('refuses a webhook_url when no secret is configured, and a bad model_name, naming the field', async () => {
    const noSecret = await call(unsigned, '/v1/training/jobs', { ...job, webhook_url: 'http://127.0.0.1:9/hook' });
    expect(noSecret.status).toBe(400);
    expect(noSecret.body.error).toMatchObject({ param: 'webhook_url' });
    expect(noSecret.body.error?.message).toMatch(/INTERFLEET_WEBHOOK_SECRET/);
    const badName = await call(signed, '/v1/training/jobs', { ...job, model_name: 'Not OK' });
    expect(badName.status).toBe(400);
    expect(badName.body.error).toMatchObject({ code: 'bad_request', param: 'model_name' });
    const noEval = await call(signed, '/v1/training/jobs', { ...job, eval_uri: `file://${dir}/missing.tsv` });
    expect(noEval.status).toBe(400);
    expect(noEval.body.error).toMatchObject({ code: 'bad_request', param: 'eval_uri' });
    expect(noEval.body.error?.message).toMatch(/cannot be read \(not_found\)/);
  });

  it('shows the new fields of a job before it has results', async () => {
    const created = await call(signed, '/v1/training/jobs', {
      ...job,
      eval_uri: `file://${dir}/eval.tsv`,
      model_name: 'm',
      webhook_url: 'http://127.0.0.1:9/hook',
    });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({
      eval_uri: `file://${dir}/eval.tsv`,
      model_name: 'm',
      webhook_url: 'http://127.0.0.1:9/hook',
      manifest: null,
      manifest_error: null,
      webhook: null,
    });
  });

  it('answers 404 for unknown trained models and 400 for one that cannot do sentiment', async () => {
    expect(await call(signed, '/v1/trained-models')).toEqual({ status: 200, body: { object: 'list', data: [] } });
    const missing = await call(signed, '/v1/trained-models/nope');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: 'not_found', param: 'name' });

    const infer = await call(signed, '/v1/infer', {
      model: 'p',
      input: { task: 'sentiment', text: 'ok', model: 'nope' },
    });
    expect(infer.status).toBe(404);
    expect(infer.body.error).toMatchObject({ code: 'model_not_found', param: 'input.model' });
    expect(infer.body.error?.message).toBe("No trained model named 'nope' (GET /v1/trained-models lists them)");

    await new TrainedModelRegistry(signed.redis, signed.prefix).register({
      name: 'digits',
      uri: 'file:///tmp/interfleet-runs/1/round-1/model/',
      sha256: '0'.repeat(64),
      job_id: 'train_0',
      pool: 'p',
      classes: ['0', '1'],
      created_at: 0,
      evaluation: null,
    });
    const digits = await call(signed, '/v1/infer', {
      model: 'p',
      input: { task: 'sentiment', text: 'ok', model: 'digits' },
    });
    expect(digits.status).toBe(400);
    expect(digits.body.error).toMatchObject({ code: 'bad_request', param: 'input.model' });
    expect((await call(signed, '/v1/trained-models/digits')).body).toMatchObject({
      object: 'trained_model',
      name: 'digits',
    });
  });
});
