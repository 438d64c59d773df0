/**
 * The training lane: a BullMQ Worker on `train.<pool>` that runs gang ranks,
 * `concurrency` at once (pools[].lanes.training.concurrency: the slots the
 * scheduler admits gangs into). Each job is one rank of one round of a
 * training job; the lane runs its command (run-command.ts) and settles the
 * rank once in the gang's state (TrainingStore).
 *
 * How a rank job ends:
 * - the gang is not running this round (failed, cancelled, or the job is a
 *   late duplicate): nothing runs; the job completes `skipped`. A rank that
 *   already ended in this round completes `superseded`.
 * - exit 0 (and not stopped, below): settled succeeded with its last
 *   metrics; the job completes.
 * - a non-zero exit or a signal: on the job's last attempt (or when the
 *   command could not even start) settled failed, which fails the gang, and
 *   the job fails unrecoverably with the reason (exit code and stderr's
 *   end); before that, BullMQ retries it with backoff.
 * - stopped because its gang ended (the scheduler's message on the cancel
 *   channel): the command is killed, nothing is settled; the job completes
 *   `stopped`.
 * - stopped by a drain (SIGTERM): the command is killed before the grace
 *   period ends and the job goes back to the queue without spending an
 *   attempt, for another worker to run.
 * Metric lines (JSON objects with a `metric`) become the job's log lines and
 * its progress (the last value of each metric), written at most every
 * PROGRESS_EVERY_MS.
 *
 * The lane's inFlight (its heartbeat) counts ranks only, and it calls
 * `onRanksChanged` whenever a rank starts or ends, so that the worker beats at
 * once: the leader admits the next round on the heartbeats' word, and a beat
 * up to `heartbeatMs` late kept it waiting. Reduce and finish jobs run on
 * the same BullMQ slots; the leader counts a reduce from the gang's state.
 *
 * A reduce classifies its errors (reduce-failure.ts): a storage error that is
 * retryable, or a Redis error while moving the gang on, is thrown as is and
 * BullMQ retries the job with backoff (its attempts); anything else (a bad or
 * empty checkpoint, shapes that differ, the reduce program failing, storage
 * refusing for good) fails it unrecoverably, and the leader fails the gang
 * with that reason.
 */
import { tmpdir } from 'node:os';
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import { programAllowed, type TrainingLaneConfig } from '../../common/config.ts';
import {
  FINISH_JOB_NAME,
  finishJobSchema,
  type FinishJob,
  RANK_JOB_NAME,
  rankJobSchema,
  REDUCE_JOB_NAME,
  reduceJobSchema,
  type MetricLine,
  type RankJob,
  type ReduceJob,
} from '../../common/contracts/training.ts';
import type { Logger } from '../../common/logger.ts';
import { settleWithin } from '../../common/process.ts';
import type { RedisClient } from '../../common/redis.ts';
import { queueName } from '../../common/topology.ts';
import type { Master, TrainingStore } from '../../common/training/training-state.ts';
import type { Lane } from '../realtime-lane.ts';
import { isStorageError, type Storage } from '../../common/storage/index.ts';
import { reduceFailure, type ReduceStep } from './reduce-failure.ts';
import { makeRankDirs, pullPrefix, pullShard, pushDir, removeRankDirs } from './rank-files.ts';
import { reduceRound } from './reduce-program.ts';
import { sweepOrphans, writeOwner } from './orphans.ts';
import { awaitMaster, freePort } from './rendezvous.ts';
import { failureReason, type RunResult } from './run-command.ts';
import { localRunner } from './runners/local.ts';
import type { RankRunner } from './runners/runner.ts';

const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export interface TrainingLaneDeps {
  prefix: string;
  pool: string;
  workerId: string;
  /** Ranks at once (≥ 1). */
  concurrency: number;
  connection: RedisClient;
  store: Pick<TrainingStore, 'startRank' | 'settleRank' | 'finishReduce' | 'publishMaster' | 'master'>;
  logger: Logger;
  /** After SIGTERM, how long a command has before SIGKILL (default 2 s). */
  killAfterMs?: number;
  /** The worker's environment, which commands inherit a few names of (run-command.ts inheritedEnv); process.env by default. */
  env?: NodeJS.ProcessEnv;
  /** Variables the pool declares for its ranks and reduces (pools[].lanes.training.env). */
  declaredEnv?: Readonly<Record<string, string>>;
  /** Where ranks get their data, starting checkpoints and outputs. */
  storage: Storage;
  /** The programs a rank's command may name (pools[].lanes.training.programs). */
  programs: readonly string[];
  /** Where the ranks' working directories are made (default: the OS temporary directory). */
  workRoot?: string;
  /** Runs an ended job's results (finish-job.ts); without it, finish jobs fail. */
  finish?: (job: FinishJob, signal: AbortSignal) => Promise<unknown>;
  /** Told how long each reduce took, in seconds (the worker's metrics). */
  onReduced?: (seconds: number) => void;
  /** Told when a rank starts or ends (the worker beats at once: the leader admits on the heartbeats). */
  onRanksChanged?: () => void;
  /** How fast a rank lost with its worker runs again, how long a gang's rank waits for rank 0 (pools[].lanes.training). */
  settings: Pick<
    TrainingLaneConfig,
    'lockDurationMs' | 'stalledIntervalMs' | 'maxStalledCount' | 'rendezvousTimeoutMs'
  >;
  /** Gang mode: the address rank 0 publishes (rendezvous.ts advertisedHost). */
  advertiseHost: string;
  /** Where a rank's command runs (runners/registry.ts); the local runner by default. Reduces run locally. */
  runner?: RankRunner;
}

/** The heartbeat's view of a lane, under the training lane's own name. */
export type TrainingLane = Omit<Lane, 'name'> & { readonly name: 'training' };

export type RankJobResult =
  | { status: 'succeeded'; metrics: Record<string, number>; checkpointUri: string }
  | { status: 'reduced'; modelUri: string }
  | { status: 'finished' }
  | { status: 'skipped' | 'superseded' | 'stopped' };

/** Most often a running rank writes its progress and log lines to Redis. */
const PROGRESS_EVERY_MS = 500;
/** Log lines one flush writes; more are counted, not written (a command printing thousands a second). */
const LOG_LINES_PER_FLUSH = 50;
/** Metric names a rank's record keeps (the last value of each). */
const MAX_METRICS = 64;

/** Cancel reasons the lane gives BullMQ: a drain puts the rank back, anything else stops it. */
const DRAINING = 'draining';

export function startTrainingLane(deps: TrainingLaneDeps): TrainingLane {
  const { pool, store, workerId, storage, programs } = deps;
  const log = deps.logger.child({ lane: 'training', queue: queueName('train', pool) });
  const killAfterMs = deps.killAfterMs ?? 2000;
  const runner = deps.runner ?? localRunner;
  let running = 0;

  /** Metric lines into the job's log and progress, coalesced: one write in flight at a time. */
  const progressWriter = (job: Job, ref: { round: number; rank?: number }, metrics: Record<string, number>) => {
    let lines: string[] = [];
    let dropped = 0;
    let flushing: Promise<void> | undefined;
    const write = async (): Promise<void> => {
      while (lines.length > 0 || dropped > 0) {
        const batch = lines;
        const skipped = dropped;
        lines = [];
        dropped = 0;
        await Promise.all(batch.map((line) => job.log(line)));
        if (skipped > 0) await job.log(`(${skipped} metric lines not logged)`);
        await job.updateProgress({ round: ref.round, rank: ref.rank, metrics });
      }
    };
    const flush = (): Promise<void> =>
      (flushing ??= write()
        .catch((err: unknown) => log.debug({ err, jobId: job.id }, 'progress not written'))
        .finally(() => (flushing = undefined)));
    const timer = setInterval(() => void flush(), PROGRESS_EVERY_MS);
    return {
      metrics,
      add(metric: MetricLine, line: string): void {
        if (metric.value !== undefined && (metric.metric in metrics || Object.keys(metrics).length < MAX_METRICS)) {
          metrics[metric.metric] = metric.value;
        }
        if (lines.length < LOG_LINES_PER_FLUSH) lines.push(line.trim());
        else dropped++;
      },
      async end(): Promise<void> {
        clearInterval(timer);
        await flush();
        await flush(); // lines that came while the last write was ending
      },
    };
  };

  /** Stopped by a drain: the job goes back to the queue without spending an attempt. */
  const requeue = async (job: Job, token: string | undefined, jobLog: Logger): Promise<never> => {
    jobLog.info('stopped by the drain; back to the queue');
    await job.moveToDelayed(Date.now(), token);
    throw new DelayedError();
  };

  /**
   * Gang mode: rank 0 publishes a free port of this host; the others wait for it. Undefined when the
   * gang no longer runs this run of the round (rank 0 found it so when publishing).
   */
  const meet = async (rank: RankJob, signal: AbortSignal): Promise<Master | undefined> => {
    const where = { pool, jobId: rank.jobId, round: rank.round, restart: rank.restart };
    if (rank.rank !== 0) {
      return awaitMaster(store, where, { signal, timeoutMs: deps.settings.rendezvousTimeoutMs });
    }
    const master = { round: rank.round, restart: rank.restart, addr: deps.advertiseHost, port: await freePort() };
    return (await store.publishMaster(pool, rank.jobId, master)) ? master : undefined;
  };

  const runRank = async (job: Job, rank: RankJob, token?: string, signal?: AbortSignal): Promise<RankJobResult> => {
    const jobLog = log.child({ jobId: job.id, trainingJob: rank.jobId, round: rank.round, rank: rank.rank });
    const startedAt = Date.now();
    const base = { worker: workerId, startedAt, checkpointUri: rank.checkpointUri, restart: rank.restart };
    const { restart } = rank;
    const metricsSoFar: Record<string, number> = {};
    const settle = (
      outcome: 'succeeded' | 'failed',
      reason: string | null,
      exitCode: number | null,
      endedAt: number,
      final = false,
    ) =>
      store.settleRank(
        pool,
        rank.jobId,
        rank.round,
        rank.rank,
        { ...base, state: outcome, endedAt, exitCode, reason, metrics: metricsSoFar },
        endedAt,
        restart,
        final,
      );
    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    /**
     * A failure: for good on the last attempt (or when no retry can help), else BullMQ retries it.
     * `final`: no gang restart can help either (gang mode fails at once).
     */
    const fail = async (reason: string, exitCode: number | null, forGood: boolean, final = false): Promise<never> => {
      if (forGood || final || lastAttempt) {
        const settled = await settle('failed', reason, exitCode, Date.now(), final);
        jobLog.warn({ settled, reason }, 'rank failed for good');
        throw new UnrecoverableError(reason);
      }
      jobLog.warn({ reason, attempt: job.attemptsMade + 1 }, 'rank failed; BullMQ retries it');
      throw new Error(reason);
    };
    const what = `rank ${rank.rank} of round ${rank.round}`;
    // Checked before anything else, as well as by the API: the pool's list may have changed since the job
    // was submitted, or the job was put on the queue without the API. Never spawned; the gang fails with it.
    if (!programAllowed(programs, rank.command)) {
      return fail(`${what}: command '${rank.command}' is not among this pool's training programs`, null, true, true);
    }
    if (!runner.modes.includes(rank.mode)) {
      return fail(`${what}: this pool's ${runner.kind} runner does not run ${rank.mode} mode`, null, true, true);
    }

    const start = await store.startRank(
      pool,
      rank.jobId,
      rank.round,
      rank.rank,
      { ...base, state: 'running' },
      restart,
    );
    if (start !== 'run') {
      // gang_restarting / gang_failed: it had started before in this run of its gang, which is lost.
      jobLog.info({ start }, 'rank not run');
      return { status: start === 'already_ended' ? 'superseded' : 'skipped' };
    }
    const aborted = signal ?? new AbortController().signal;
    const dirs = await makeRankDirs(`${rank.jobId}-r${rank.round}-k${rank.rank}`, deps.workRoot);
    await writeOwner(dirs.work, { worker: process.pid });
    running++;
    deps.onRanksChanged?.();
    try {
      // A runner whose program cannot see this directory (kubernetes) gets the URIs instead: nothing pulled.
      const local = runner.filesOnWorker;
      try {
        const shard = local ? await pullShard(storage, rank.data, rank.rank, rank.worldSize, dirs.data, aborted) : null;
        const init = rank.initUri === null || !local ? 0 : await pullPrefix(storage, rank.initUri, dirs.init, aborted);
        if (local && init === 0 && rank.initUri !== null && rank.round > 1 && rank.mode === 'rounds') {
          throw new Error(`the model of round ${rank.round - 1} is missing at ${rank.initUri}`);
        }
        jobLog.debug({ shard, init }, 'rank files pulled');
      } catch (err) {
        if (aborted.aborted && aborted.reason === DRAINING) return await requeue(job, token, jobLog);
        if (aborted.aborted) return { status: 'stopped' };
        // Data that is not there or not ours to read fails the job at once; a storage hiccup is retried.
        const lasting = isStorageError(err) && !err.retryable;
        return await fail(`${what}: pulling its files failed: ${errText(err)}`, null, lasting, lasting);
      }

      let master: Master | undefined;
      if (rank.mode === 'gang') {
        try {
          master = await meet(rank, aborted);
        } catch (err) {
          if (aborted.aborted && aborted.reason === DRAINING) return await requeue(job, token, jobLog);
          if (aborted.aborted) return { status: 'stopped' };
          return await fail(`${what}: rendezvous failed: ${errText(err)}`, null, true);
        }
        if (!master) {
          jobLog.info('rank not run: its gang no longer runs this round');
          return { status: 'skipped' };
        }
        jobLog.debug({ master }, 'rendezvous');
      }

      const progress = progressWriter(job, rank, metricsSoFar);
      let result: RunResult;
      try {
        result = await runner.run({
          command: rank.command,
          args: rank.args,
          rank,
          env: runner.env(rank, { worker: deps.env ?? process.env, declared: deps.declaredEnv, dirs, master }),
          cwd: dirs.work,
          signal: aborted,
          onMetric: (metric, line) => progress.add(metric, line),
          killAfterMs,
          onStart: (group) =>
            void writeOwner(dirs.work, { worker: process.pid, ...(group !== undefined && { group }) }).catch(
              (err: unknown) => jobLog.warn({ err }, 'rank owner not recorded'),
            ),
        });
      } finally {
        await progress.end();
      }
      // Stopped first, whatever the exit status: a command that exits 0 on SIGTERM did not finish its round.
      if (aborted.aborted) {
        if (aborted.reason === DRAINING) return await requeue(job, token, jobLog);
        jobLog.info({ reason: aborted.reason as unknown }, 'rank stopped: its gang ended');
        return { status: 'stopped' };
      }
      if (result.exitCode !== 0)
        return await fail(
          `${what}: ${failureReason(result)}`,
          result.exitCode,
          !!result.spawnError,
          !!result.spawnError,
        );
      try {
        const pushed = local ? await pushDir(storage, dirs.output, rank.checkpointUri, aborted) : null;
        jobLog.debug({ pushed }, 'rank output uploaded');
      } catch (err) {
        if (aborted.aborted && aborted.reason === DRAINING) return await requeue(job, token, jobLog);
        return await fail(`${what}: uploading its output to ${rank.checkpointUri} failed: ${errText(err)}`, 0, false);
      }
      const endedAt = Date.now();
      const settled = await settle('succeeded', null, 0, endedAt);
      jobLog.info({ settled, runMs: endedAt - startedAt }, 'rank succeeded');
      return { status: 'succeeded', metrics: metricsSoFar, checkpointUri: rank.checkpointUri };
    } finally {
      running--;
      deps.onRanksChanged?.();
      await removeRankDirs(dirs).catch((err: unknown) =>
        jobLog.warn({ err, dir: dirs.work }, 'rank directory not removed'),
      );
    }
  };

  /** A round's reduce (rounds mode): the ranks' checkpoints reduced into the round's model, then the gang moves on. */
  const runReduce = async (
    job: Job,
    reduce: ReduceJob,
    token?: string,
    signal?: AbortSignal,
  ): Promise<RankJobResult> => {
    const jobLog = log.child({ jobId: job.id, trainingJob: reduce.jobId, round: reduce.round, reduce: true });
    const aborted = signal ?? new AbortController().signal;
    const dirs = await makeRankDirs(`${reduce.jobId}-r${reduce.round}-reduce`, deps.workRoot);
    const reduceStarted = performance.now();
    await writeOwner(dirs.work, { worker: process.pid });
    // Not counted in `running`: the heartbeat's inFlight is ranks; the leader counts the reduce from the gang.
    let step: ReduceStep = 'reduce';
    try {
      // The built-in average, or the job's reduce program run as a rank is (reduce-program.ts).
      const progress = progressWriter(job, { round: reduce.round }, {});
      const env = { worker: deps.env ?? process.env, declared: deps.declaredEnv };
      const onMetric = (metric: MetricLine, line: string) => progress.add(metric, line);
      await reduceRound(reduce, dirs, { storage, programs, env, killAfterMs, onMetric }, aborted).finally(() =>
        progress.end(),
      );
      step = 'push';
      const pushed = await pushDir(storage, dirs.output, reduce.outputUri, aborted);
      step = 'settle';
      const moved = await store.finishReduce(pool, reduce.jobId, reduce.round, Date.now());
      deps.onReduced?.((performance.now() - reduceStarted) / 1000);
      jobLog.info({ pushed, moved, model: reduce.outputUri }, 'round reduced');
      return { status: 'reduced', modelUri: reduce.outputUri };
    } catch (err) {
      if (aborted.aborted && aborted.reason === DRAINING) return await requeue(job, token, jobLog);
      if (err instanceof UnrecoverableError || err instanceof DelayedError) throw err;
      const failure = reduceFailure(step, err);
      const reason = `reduce of round ${reduce.round}: ${failure.message}`;
      if (!failure.retryable) throw new UnrecoverableError(reason);
      jobLog.warn({ err, step, attempt: job.attemptsMade + 1 }, 'reduce failed; BullMQ retries it');
      throw new Error(reason, { cause: err });
    } finally {
      await removeRankDirs(dirs).catch((err: unknown) =>
        jobLog.warn({ err, dir: dirs.work }, 'reduce directory not removed'),
      );
    }
  };

  const processor = async (job: Job, token?: string, signal?: AbortSignal): Promise<RankJobResult> => {
    if (job.name === FINISH_JOB_NAME) {
      const parsed = finishJobSchema.safeParse(job.data);
      if (!parsed.success || !deps.finish) throw new UnrecoverableError('bad_request: not a finish job this lane runs');
      await deps.finish(parsed.data, signal ?? new AbortController().signal);
      return { status: 'finished' };
    }
    if (job.name === REDUCE_JOB_NAME) {
      const parsed = reduceJobSchema.safeParse(job.data);
      if (parsed.success) return runReduce(job, parsed.data, token, signal);
      const issue = parsed.error.issues[0];
      throw new UnrecoverableError(
        `bad_request: not a reduce job: ${issue ? `${issue.path.join('.')}: ${issue.message}` : ''}`,
      );
    }
    const parsed = rankJobSchema.safeParse(job.data);
    if (!parsed.success || job.name !== RANK_JOB_NAME) {
      // Not settled here: the scheduler's reconciliation fails the gang from the failed job.
      const issue = parsed.error?.issues[0];
      throw new UnrecoverableError(
        `bad_request: not a rank job: ${issue ? `${issue.path.join('.')}: ${issue.message}` : job.name}`,
      );
    }
    return runRank(job, parsed.data, token, signal);
  };

  const worker = new Worker(queueName('train', pool), processor, {
    connection: deps.connection,
    prefix: deps.prefix,
    concurrency: deps.concurrency,
    name: workerId,
    lockDuration: deps.settings.lockDurationMs,
    stalledInterval: deps.settings.stalledIntervalMs,
    maxStalledCount: deps.settings.maxStalledCount,
  });
  worker.on('error', (err) => log.error({ err }, 'training worker error'));
  // What a worker killed on this host left: its ranks' commands still running, their directories.
  void sweepOrphans(deps.workRoot ?? tmpdir())
    .then((swept) => {
      if (swept.dirs > 0) log.warn(swept, 'removed rank directories (and killed commands) of dead workers');
    })
    .catch((err: unknown) => log.warn({ err }, 'orphaned rank directories not swept'));

  return {
    name: 'training',
    concurrency: deps.concurrency,
    inFlight: () => running,
    // The scheduler names rank job ids on the cancel channel when their gang ends.
    cancel: (id) => void worker.cancelJob(id, 'gang_ended'),
    async close(graceMs) {
      // Stop fetching and wait; the commands still running are signalled so that SIGKILL lands by the grace's end.
      const closing = worker.close();
      const timer = setTimeout(() => worker.cancelAllJobs(DRAINING), Math.max(0, graceMs - killAfterMs));
      try {
        if (!(await settleWithin(closing, graceMs + 3000))) {
          log.warn('training lane did not close cleanly (Redis unreachable?); forcing');
          worker.cancelAllJobs(DRAINING);
          await settleWithin(worker.close(true), 1000);
        }
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
