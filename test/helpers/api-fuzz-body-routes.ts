/**
 * The producer's routes that take a JSON body, each with a body that is valid
 * as it stands and the fields a mutation may break (test/helpers/api-fuzz-bodies.ts).
 * Ranges and enums are the schemas' own, so a value outside them is invalid.
 */
import type { FuzzTargets } from './api-fuzz-case.ts';

export type Kind = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'enum';
export interface Field {
  readonly path: readonly (string | number)[];
  readonly kind: Kind;
  readonly required?: boolean;
  readonly nullable?: boolean;
  readonly min?: number;
  readonly max?: number;
  readonly maxLen?: number;
  readonly values?: readonly string[];
}
export interface BodyRoute {
  readonly path: string;
  readonly base: Record<string, unknown>;
  readonly fields: readonly Field[];
  /** Unknown top-level keys are refused (strictObject), so one added is a mutation. */
  readonly strict: boolean;
}

/** Markers replaced in the serialised text (JSON.stringify cannot make bad bytes or 20 000 levels itself). */
export const TEXT = '@@TEXT@@';
export const PROTO = '"@@PROTO@@":0';

export function bodyRoutes(t: FuzzTargets): BodyRoute[] {
  return [
    {
      path: '/v1/chat/completions',
      strict: false,
      base: { model: t.pool, messages: [{ role: 'user', content: TEXT }], max_tokens: 16, temperature: 0.5, user: 'u' },
      fields: [
        { path: ['model'], kind: 'string', required: true },
        { path: ['messages'], kind: 'array', required: true },
        {
          path: ['messages', 0, 'role'],
          kind: 'enum',
          required: true,
          values: ['system', 'developer', 'user', 'assistant', 'tool'],
        },
        { path: ['max_tokens'], kind: 'integer', nullable: true, min: 1, max: 32768 },
        { path: ['temperature'], kind: 'number', nullable: true, min: 0, max: 2 },
        { path: ['user'], kind: 'string' },
      ],
    },
    {
      path: '/v1/infer',
      strict: false,
      base: { model: t.pool, input: { task: 'sentiment', text: TEXT }, timeout_ms: 5000, stream: false },
      fields: [
        { path: ['model'], kind: 'string', required: true },
        { path: ['input'], kind: 'object', required: true },
        { path: ['input', 'task'], kind: 'enum', required: true, values: ['sentiment', 'summarize', 'chat'] },
        { path: ['input', 'text'], kind: 'string', required: true },
        { path: ['timeout_ms'], kind: 'integer', min: 1 },
        { path: ['stream'], kind: 'boolean' },
      ],
    },
    {
      path: '/v1/batches',
      strict: true,
      base: {
        input_file: t.dataUri,
        endpoint: '/v1/infer',
        model: t.pool,
        completion_window: '24h',
        metadata: { note: TEXT },
        priority: 0,
        tenant: 't',
      },
      fields: [
        { path: ['input_file'], kind: 'string', required: true },
        { path: ['endpoint'], kind: 'enum', required: true, values: ['/v1/infer', '/v1/chat/completions'] },
        { path: ['model'], kind: 'string' },
        { path: ['completion_window'], kind: 'string' },
        { path: ['metadata'], kind: 'object', nullable: true },
        { path: ['metadata', 'note'], kind: 'string', maxLen: 512 },
        { path: ['priority'], kind: 'integer', min: 0, max: 9 },
        { path: ['tenant'], kind: 'string', maxLen: 64 },
      ],
    },
    {
      path: '/v1/training/jobs',
      strict: true,
      base: {
        pool: t.pool,
        tenant: 't',
        command: 'builtin:text-classifier',
        args: [TEXT],
        data_uri: t.dataUri,
        shard: 'lines',
        mode: 'gang',
        checkpoint_uri: t.checkpointUri,
        params: { lr: 0.1 },
        workers: 1,
        rounds: 1,
        priority: 0,
        max_attempts: 1,
      },
      fields: [
        { path: ['pool'], kind: 'string', required: true },
        { path: ['command'], kind: 'string', required: true },
        { path: ['args'], kind: 'array' },
        { path: ['shard'], kind: 'enum', values: ['lines', 'objects', 'none'] },
        { path: ['mode'], kind: 'enum', values: ['gang', 'rounds'] },
        { path: ['checkpoint_uri'], kind: 'string', required: true },
        { path: ['params'], kind: 'object' },
        { path: ['workers'], kind: 'integer', required: true, min: 1, max: 256 },
        { path: ['rounds'], kind: 'integer', min: 1, max: 1000 },
        { path: ['max_attempts'], kind: 'integer', min: 1, max: 1 },
      ],
    },
  ];
}
