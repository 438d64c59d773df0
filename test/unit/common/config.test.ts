import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../../common/config.ts';

/** A config with one batch schedule whose other fields are `fields` (YAML flow mapping entries). */
const schedule = (fields: string): string =>
  `batch:\n  schedules:\n    - { name: nightly, model: default, input: 'file:///in/{date-1d}/', ${fields} }\n`;

describe('parseConfig', () => {
  it('runs on embedded defaults with no input', () => {
    const config = parseConfig({});
    expect(config.redis.url).toBe('redis://127.0.0.1:6379');
    expect(config.producer).toMatchObject({ port: 8080, bodyLimitBytes: 1024 * 1024, defaultTimeoutMs: 30_000 });
    expect(config.pools).toEqual([expect.objectContaining({ name: 'default', backend: 'embedded', maxWaiting: 1000 })]);
    expect(config.pools[0]!.lanes.realtime.concurrency).toBe(4);
  });

  it.each([
    ['a laptop', {}, '', 'warn'],
    ['production (NODE_ENV, as in the image)', { NODE_ENV: 'production' }, '', 'refuse'],
    ['production, told otherwise in the file', { NODE_ENV: 'production' }, 'redis:\n  evictionCheck: warn\n', 'warn'],
    [
      'production, told otherwise by the environment',
      { NODE_ENV: 'production', INTERFLEET_REDIS_EVICTION_CHECK: 'off' },
      '',
      'off',
    ],
  ])('checks the eviction policy on %s: %s', (_what, env, file, mode) => {
    expect(parseConfig(env, file).redis.evictionCheck).toBe(mode);
  });

  it("keeps the launcher's private Redis in a data directory, fsync every second unless told", () => {
    expect(parseConfig({}).launcher.redis).toEqual({ appendfsync: 'everysec' });
    expect(
      parseConfig({ INTERFLEET_REDIS_DIR: '/var/lib/if', INTERFLEET_REDIS_FSYNC: 'always' }).launcher.redis,
    ).toEqual({
      dataDir: '/var/lib/if',
      appendfsync: 'always',
    });
    expect(() => parseConfig({ INTERFLEET_REDIS_FSYNC: 'sometimes' })).toThrow(/launcher\.redis\.appendfsync/);
  });

  it('lets the environment win over the file', () => {
    const config = parseConfig(
      { PORT: '9000', REDIS_URL: 'rediss://u:p@r:6380' },
      'producer:\n  port: 7000\n  host: 0.0.0.0\n',
    );
    expect(config.producer).toMatchObject({ port: 9000, host: '0.0.0.0' });
    expect(config.redis.url).toBe('rediss://u:p@r:6380');
  });

  it.each([
    ['PORT', { PORT: 'eighty' }, '', 'PORT: expected a number'],
    ['a boolean', { REDIS_CLUSTER: 'maybe' }, '', 'REDIS_CLUSTER: expected true or false'],
    ['a pool name', {}, 'pools:\n  - name: Big_Pool\n', 'pools.0.name'],
    [
      'an openai pool without baseUrl',
      {},
      'pools:\n  - name: gpt\n    backend: openai\n',
      'pools.0.baseUrl: the openai backend needs baseUrl',
    ],
    ['duplicate pools', {}, 'pools:\n  - name: a\n  - name: a\n', 'duplicate pool name(s) a'],
    ['an unknown worker pool', { WORKER_POOL: 'zzz' }, '', 'worker.pool: "zzz" is not a configured pool'],
    ['a non-mapping file', {}, '- 1\n- 2\n', 'expected a YAML mapping'],
    ['a negative timeout', {}, 'producer:\n  defaultTimeoutMs: -5\n', 'producer.defaultTimeoutMs'],
    [
      'a cron pattern out of range',
      {},
      schedule("cron: '61 3 * * *'"),
      'batch.schedules.0.cron: "61 3 * * *" is not a cron pattern: Constraint error, got value 61 expected range 0-59',
    ],
    [
      'an unknown time zone',
      {},
      schedule("cron: '0 3 * * *', tz: Mars/Olympus"),
      '"Mars/Olympus" is not an IANA time zone',
    ],
    [
      'a zero completion window',
      {},
      schedule("cron: '0 3 * * *', completionWindow: 0s"),
      'batch.schedules.0.completionWindow: "0s" must be positive',
    ],
    [
      'a completion window past the maximum',
      {},
      schedule("cron: '0 3 * * *', completionWindow: 8d"),
      'at most batch.maxCompletionWindowMs (604800000 ms)',
    ],
    [
      'an unknown URI placeholder',
      {},
      schedule("cron: '0 3 * * *', output: 'file:///out/{week}/'"),
      'batch.schedules.0.output: template "file:///out/{week}/" has an unknown placeholder',
    ],
  ])('rejects %s with the path in the message', (_name, env, yaml, message) => {
    expect(() => parseConfig(env, yaml)).toThrow(ConfigError);
    expect(() => parseConfig(env, yaml)).toThrow(message);
  });

  it('accepts a schedule with a 6-field pattern, a zone and templates', () => {
    const config = parseConfig(
      {},
      schedule("cron: '0 */15 * * * *', tz: Europe/Paris, output: 'file:///out/{yyyy}/{mm}/'"),
    );
    expect(config.batch.schedules[0]).toMatchObject({ name: 'nightly', tz: 'Europe/Paris', cron: '0 */15 * * * *' });
  });

  it('reports every problem at once', () => {
    try {
      parseConfig({}, 'producer:\n  port: -1\n  bodyLimitBytes: 1\n');
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).issues).toHaveLength(2);
    }
  });
});
