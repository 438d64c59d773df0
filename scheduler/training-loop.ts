/**
 * The leader's training pass, per pool with open gangs: read the gangs and
 * the ready workers' training lanes, decide (gang-admission.ts), apply.
 *
 * Admission is fenced by the pool: the pass first claims the pool's fence
 * with its epoch (a stale leader finds a newer epoch there and stands down),
 * and each admission moves the gang queued → running in one Lua call that
 * checks that fence again. Only then are the round's rank jobs added to
 * `train.<pool>`, one per rank, with deterministic ids. Fence first, jobs
 * second: jobs added before a refused move would run ranks no gang holds,
 * which the next admission would not count. A crash between the two leaves a
 * running gang without jobs; the reconciliation below adds them again (a rank
 * job id that still exists makes the add a no-op).
 *
 * The next round needs no action here: the rank that settles a round's last
 * success moves the gang back to queued for round r+1 (TrainingStore
 * .settleRank), and the next pass admits it through the same decision (the
 * scheduler runs that pass as soon as the rank's job completes: BullMQ's
 * event stream of `train.<pool>`, scheduler.ts; the timer is the fallback). In
 * `rounds` mode it moves the gang to `reducing` instead, and the pass adds
 * the round's reduce job (one deterministic id per round, so adding it again
 * is a no-op); the training lane that runs it writes the round's model and
 * moves the gang on. A reduce job that failed for good fails the gang.
 *
 * A gang that failed (a rank failed for good) or was cancelled is wound up:
 * its round's rank jobs still queued are removed, ranks still running are
 * asked to stop over the cancel channel (the training lane kills their
 * commands), and whatever a rank reports afterwards is ignored (its
 * settlement finds the gang no longer running). A rank that misses the
 * message runs to its end; its slot counts as used through the heartbeats.
 *
 * Reconciliation, at most every `reconcileEveryMs` per running gang: a rank
 * with no final record whose job is gone is added again, and one whose job
 * completed without settling it is run again (nothing else would); one whose
 * job failed without the worker settling it (its worker died more often than
 * lanes.training.maxStalledCount) fails the gang with the job's reason. A
 * rank or reduce whose worker died needs nothing here: its lock lapses and the
 * stalled check of the pool's training lanes puts the job back on the queue
 * (lanes.training.lockDurationMs); the rank runs again in a fresh directory
 * from the round's starting checkpoint. A new leader keeps no state of its
 * own: it reads the gangs, and a reduce that was due is added again (a no-op
 * while its job exists).
 *
 * After each pool's pass the leader writes its explanation record
 * (training-explain.ts) and sets the training metrics, while the pool has open
 * gangs or a quota. Like the other explain records it is not fenced: it is
 * informational, kept a minute, and a newer leader's next pass overwrites it.
 */
import type { JobsOptions, Queue } from 'bullmq';
import type { PoolConfig } from '../common/config.ts';
import { liveWorkers } from '../common/contracts/heartbeat.ts';
import {
  checkpointUriFor,
  RANK_JOB_NAME,
  rankJobFor,
  REDUCE_JOB_NAME,
  reduceJobFor,
  type TrainingSpec,
} from '../common/contracts/training.ts';
import type { Logger } from '../common/logger.ts';
import { PoolQueues } from '../common/pool-queues.ts';
import type { RedisClient } from '../common/redis.ts';
import { isFinal, TrainingStore, type TrainingState } from '../common/training/training-state.ts';
import { cancelChannel, EXPLAIN_TTL_MS, explainKey, rankJobId, reduceJobId, workersKey } from '../common/topology.ts';
import { StaleLeaderError } from './fenced-writes.ts';
import { decideGangs, gangOrder, type GangDecision, type GangPass, type GangSnapshot } from './gang-admission.ts';
import type { SchedulerMetrics } from './metrics.ts';
import { gangSnapshot, trainingExplanation } from './training-explain.ts';

/** Rank jobs are kept a day after they end: a reconciliation must not mistake a finished one for a lost one. */
const rankJobOpts: JobsOptions = {
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: { age: 86_400 },
  removeOnFail: { age: 7 * 86_400 },
};

export interface TrainingLoopDeps {
  redis: RedisClient;
  prefix: string;
  pools: readonly Pick<PoolConfig, 'name' | 'trainingQuota'>[];
  metrics: SchedulerMetrics;
  logger: Logger;
  now: () => number;
  /** Least time between two checks of a running gang's rank jobs (default 5 s). */
  reconcileEveryMs?: number;
  /** Told of each ended gang before it is closed (its results are due: training-finisher.ts). */
  onEnded?: (gang: TrainingState) => Promise<void>;
}

/** The training part of a pool's demand, for the autoscaler (PoolSnapshot.training). */
export interface GangDemand {
  slotsHeld: number;
  waitingGangs: readonly number[];
}

/** A pass's decision about one waiting gang, with its pool. */
export type PoolDecision = GangDecision & { pool: string };

export class TrainingLoop {
  private readonly store: TrainingStore;
  private readonly queues: PoolQueues;
  /** When each running gang's round was last reconciled (`<id>:<round>`). */
  private readonly reconciled = new Map<string, number>();
  /** Pools this loop wrote an explanation for: deleted once they have nothing to explain. */
  private readonly explained = new Set<string>();
  /** Per pool: the training demand its last pass read (gangDemand). */
  private readonly demands = new Map<string, GangDemand>();

  constructor(private readonly deps: TrainingLoopDeps) {
    this.store = new TrainingStore(deps.redis, deps.prefix);
    this.queues = new PoolQueues('train', deps.redis, deps.prefix);
  }

  /** One pass as leader of `epoch`. Throws StaleLeaderError when a newer leader has claimed a pool. */
  async pass(epoch: number): Promise<PoolDecision[]> {
    const out: PoolDecision[] = [];
    for (const pool of this.deps.pools) {
      try {
        for (const d of await this.poolPass(pool, epoch)) out.push({ pool: pool.name, ...d });
      } catch (err) {
        if (err instanceof StaleLeaderError) throw err;
        this.deps.logger.warn({ err, pool: pool.name }, 'training pass failed for a pool; retried next pass');
      }
    }
    return out;
  }

  async close(): Promise<void> {
    await this.queues.close();
  }

  /**
   * What the pool's gangs asked of the fleet at the last pass (the autoscaler's training part):
   * ranks held by admitted gangs and the sizes of the waiting ones, head first. Undefined until a
   * pass of this term has read the pool.
   */
  gangDemand(pool: string): GangDemand | undefined {
    return this.demands.get(pool);
  }

  /** Forgets what the last term read (on losing leadership). */
  reset(): void {
    this.demands.clear();
  }

  private queue(pool: string): Queue {
    return this.queues.get(pool);
  }

  private async poolPass(pool: Pick<PoolConfig, 'name' | 'trainingQuota'>, epoch: number): Promise<GangDecision[]> {
    const { logger } = this.deps;
    const ids = await this.store.openIds(pool.name);
    const gangs = ids.length > 0 ? await this.openGangs(pool.name, ids, epoch) : [];
    const now = this.deps.now();
    // Heartbeats once per pass, for a pool with gangs: who is alive (reconcile) and what is free (admission).
    const fleet =
      gangs.length > 0 || pool.trainingQuota !== undefined ? await this.trainingSlots(pool.name, now) : undefined;
    const open: TrainingState[] = [];
    for (const found of gangs) {
      let g = found;
      if (g.stopRestart !== null) await this.stopRun(g, g.stopRestart);
      if (!isFinal(g.status) && g.spec.deadline !== undefined && now >= g.spec.deadline) {
        g = await this.expire(g, g.spec.deadline, now);
      }
      if (isFinal(g.status)) {
        await this.windUp(g);
        continue;
      }
      if (g.status === 'running' && (await this.reconcile(g, now, fleet?.live ?? new Set()))) {
        // It restarted or failed: the next pass stops the run it left, or winds it up.
        g = (await this.store.get(pool.name, g.spec.id)) ?? g;
        if (isFinal(g.status)) continue;
      }
      open.push(g);
      if (g.status === 'reducing') await this.reduce(g, now);
    }
    // Nothing to admit nor to explain: a pool without training costs this pass one ZRANGE.
    if (open.length === 0 && pool.trainingQuota === undefined) {
      this.demands.set(pool.name, { slotsHeld: 0, waitingGangs: [] });
      await this.quiet(pool.name);
      return [];
    }

    // Read even with nothing waiting: the explanation says what is free.
    const { slots, inFlight } = fleet ?? (await this.trainingSlots(pool.name, now));
    const snapshot = gangSnapshot(open, { slots, inFlight, quota: pool.trainingQuota });
    const pass = decideGangs(snapshot);
    this.demands.set(pool.name, {
      slotsHeld: snapshot.heldNotStarted + snapshot.heldRunning + snapshot.heldReducing,
      waitingGangs: [...snapshot.waiting].sort(gangOrder).map((g) => g.size),
    });
    const byId = new Map(open.map((g) => [g.spec.id, g]));
    for (const d of pass.decisions) {
      const gang = byId.get(d.id)!;
      if (d.kind === 'admit') await this.admit(gang, epoch, now);
      else if (gang.waiting !== d.reason) await this.store.setWaiting(pool.name, d.id, d.reason);
    }
    if (pass.decisions.length > 0) logger.debug({ pool: pool.name, slots, inFlight, ...pass }, 'training admission');
    await this.report(pool, open, snapshot, pass, epoch, now);
    return pass.decisions;
  }

  /** The pool's gangs (after claiming its fence); ids without state leave the open index. */
  private async openGangs(pool: string, ids: readonly string[], epoch: number): Promise<TrainingState[]> {
    const { logger } = this.deps;
    if (!(await this.store.fence(pool, epoch))) throw new StaleLeaderError(epoch);
    const undecodable = new Set<string>();
    const gangs = await this.store.getMany(pool, ids, (jobId, err) => {
      undecodable.add(jobId);
      logger.error({ err, jobId, pool }, 'training job state does not decode; skipped');
    });
    const found = new Set(gangs.map((g) => g.spec.id));
    for (const id of ids.filter((i) => !found.has(i) && !undecodable.has(i))) {
      logger.warn({ jobId: id, pool }, 'open training job has no state; removed from the open index');
      await this.store.close(pool, id);
    }
    return gangs;
  }

  /** Training slots of the pool's ready workers, the ranks they say run on them, and every live worker. */
  private async trainingSlots(
    pool: string,
    now: number,
  ): Promise<{ slots: number; inFlight: number; live: Set<string> }> {
    let slots = 0;
    let inFlight = 0;
    const raw = await this.deps.redis.hgetall(workersKey(this.deps.prefix, pool));
    const live = liveWorkers(raw, now);
    for (const w of live.filter((h) => h.state === 'ready')) {
      const lane = w.lanes.find((l) => l.name === 'training');
      slots += lane?.concurrency ?? 0;
      inFlight += lane?.inFlight ?? 0;
    }
    return { slots, inFlight, live: new Set(live.map((w) => w.workerId)) };
  }

  /** Metrics and the explanation record of a pool's pass; the record is best effort. */
  private async report(
    pool: Pick<PoolConfig, 'name' | 'trainingQuota'>,
    open: readonly TrainingState[],
    snapshot: GangSnapshot,
    pass: GangPass,
    epoch: number,
    now: number,
  ): Promise<void> {
    const { metrics, redis, prefix, logger } = this.deps;
    const record = trainingExplanation({
      pool: pool.name,
      quota: pool.trainingQuota,
      gangs: open,
      snapshot,
      pass,
      epoch,
      now,
    });
    for (const d of pass.decisions) metrics.trainingDecisions.inc({ pool: pool.name, reason: d.reason });
    metrics.trainingGangsWaiting.set({ pool: pool.name }, pass.decisions.filter((d) => d.kind === 'hold').length);
    metrics.trainingSlotsHeld.set({ pool: pool.name }, record.slots.held);
    this.explained.add(pool.name);
    await redis
      .set(explainKey(prefix, 'training', pool.name), JSON.stringify(record), 'PX', EXPLAIN_TTL_MS)
      .catch((err: unknown) => logger.debug({ err, pool: pool.name }, 'training explanation not written'));
  }

  /** A pool left with no gang and no quota: its gauges read 0 and its last record goes (once). */
  private async quiet(pool: string): Promise<void> {
    const { metrics, redis, prefix, logger } = this.deps;
    metrics.trainingGangsWaiting.set({ pool }, 0);
    metrics.trainingSlotsHeld.set({ pool }, 0);
    if (!this.explained.delete(pool)) return;
    await redis
      .del(explainKey(prefix, 'training', pool))
      .catch((err: unknown) => logger.debug({ err, pool }, 'training explanation not deleted'));
  }

  private async admit(gang: TrainingState, epoch: number, now: number): Promise<void> {
    const { spec, round } = gang;
    const r = await this.store.admit(spec.pool, spec.id, epoch, round, now);
    if (r === 'stale') throw new StaleLeaderError(epoch);
    if (r === 'conflict') {
      this.deps.logger.info({ jobId: spec.id, round }, 'training job moved before admission; next pass decides');
      return;
    }
    this.deps.metrics.trainingGangsAdmitted.inc({ pool: spec.pool });
    await this.addRanks(
      spec,
      round,
      Array.from({ length: spec.workers }, (_, rank) => rank),
      gang.restarts,
    );
    this.reconciled.set(`${spec.id}:${round}:${gang.restarts}`, now);
    this.deps.logger.info({ jobId: spec.id, pool: spec.pool, round, workers: spec.workers }, 'admitted a gang');
  }

  /** Rank jobs of run `restart` of the round; in gang mode each resumes from its own checkpoint of the round before. */
  private async addRanks(spec: TrainingSpec, round: number, ranks: readonly number[], restart: number): Promise<void> {
    const previous =
      spec.mode === 'gang' && round > 1
        ? await this.store.roundRanks(spec.pool, spec.id, round - 1, spec.workers)
        : new Map<number, { checkpointUri: string }>();
    await this.queue(spec.pool).addBulk(
      ranks.map((rank) => ({
        name: RANK_JOB_NAME,
        data: rankJobFor(spec, round, rank, restart, previous.get(rank)?.checkpointUri),
        // Gang mode: no retry of a rank alone (its peers would wait on a rendezvous); the gang restarts.
        opts: {
          ...rankJobOpts,
          attempts: spec.mode === 'gang' ? 1 : spec.attempts,
          jobId: rankJobId(spec.id, round, rank, restart),
        },
      })),
    );
  }

  /** Rank jobs of `restart`, a run of the gang's round that is over: queued ones removed, running ones asked to stop. */
  private async stopRanks(spec: TrainingSpec, round: number, restart: number, ranks: readonly number[]): Promise<void> {
    const queue = this.queue(spec.pool);
    for (const rank of ranks) {
      const id = rankJobId(spec.id, round, rank, restart);
      // A running rank's job is locked and stays; its lane kills the command on this message.
      await queue.remove(id);
      await this.deps.redis.publish(cancelChannel(this.deps.prefix), id);
    }
  }

  /** A gang restarted (gang mode): the run it left is stopped, once. */
  private async stopRun(gang: TrainingState, restart: number): Promise<void> {
    const { spec, round } = gang;
    await this.stopRanks(
      spec,
      round,
      restart,
      Array.from({ length: spec.workers }, (_, rank) => rank),
    );
    await this.store.stopped(spec.pool, spec.id, restart);
    this.deps.logger.warn(
      { jobId: spec.id, round, restart, reason: gang.restartReason },
      'gang restarting from its checkpoint; the run before stopped',
    );
  }

  /** An open gang past its deadline fails (then winds up like any failed gang); the state it is in now. */
  private async expire(gang: TrainingState, deadline: number, now: number): Promise<TrainingState> {
    const { spec } = gang;
    const where = gang.status === 'queued' ? `queued for round ${gang.round}` : `${gang.status} round ${gang.round}`;
    const reason = `deadline ${new Date(deadline).toISOString()} passed (${where} of ${spec.rounds})`;
    if (await this.store.expire(spec.pool, spec.id, reason, now)) {
      this.deps.logger.warn({ jobId: spec.id, reason }, 'training job past its deadline; failed');
    }
    return (await this.store.get(spec.pool, spec.id)) ?? gang;
  }

  /** A final gang: queued ranks removed, running ones asked to stop (failed, cancelled), then closed. */
  private async windUp(gang: TrainingState): Promise<void> {
    const { spec, round, status } = gang;
    if (status !== 'succeeded') {
      const records = await this.store.roundRanks(spec.pool, spec.id, round, spec.workers);
      const open = Array.from({ length: spec.workers }, (_, rank) => rank).filter((rank) => {
        const state = records.get(rank)?.state;
        return state !== 'succeeded' && state !== 'failed';
      });
      await this.stopRanks(spec, round, gang.restarts, open);
    }
    await this.deps.onEnded?.(gang);
    await this.store.close(spec.pool, spec.id);
    for (const key of this.reconciled.keys()) if (key.startsWith(`${spec.id}:`)) this.reconciled.delete(key);
    this.deps.logger.info({ jobId: spec.id, pool: spec.pool, status, reason: gang.reason }, 'training job closed');
  }

  /** A round waiting for its reduce: the job is added (a no-op while it exists); a failed one fails the gang. */
  private async reduce(gang: TrainingState, now: number): Promise<void> {
    const { spec, round } = gang;
    const queue = this.queue(spec.pool);
    const id = reduceJobId(spec.id, round);
    const job = await queue.getJob(id);
    if (!job) {
      await queue.add(REDUCE_JOB_NAME, reduceJobFor(spec, round), { ...rankJobOpts, attempts: 3, jobId: id });
      this.deps.logger.info({ jobId: spec.id, round }, 'round done; reduce job added');
      return;
    }
    const jobState = await job.getState();
    if (jobState === 'completed') {
      // It finished, yet the gang still waits on it (this very pass read it reducing): run it again.
      const current = await this.store.get(spec.pool, spec.id);
      if (current?.status === 'reducing' && current.round === round) {
        await job.retry('completed');
        this.deps.logger.warn({ jobId: spec.id, round }, 'reduce job completed without moving the gang; run again');
      }
      return;
    }
    if (jobState !== 'failed') return;
    const reason = `reduce of round ${round} failed: ${job.failedReason ?? 'its job failed'}`;
    if (await this.store.failReduce(spec.pool, spec.id, round, reason, now)) {
      this.deps.logger.warn({ jobId: spec.id, round, reason }, 'reduce failed; gang failed');
    }
  }

  /** Whether rank `rank` of `round` has its final record (read again: it may have settled since). */
  private async settled(spec: TrainingSpec, round: number, rank: number): Promise<boolean> {
    const state = (await this.store.roundRanks(spec.pool, spec.id, round, spec.workers)).get(rank)?.state;
    return state === 'succeeded' || state === 'failed';
  }

  /**
   * A running gang's ranks against their jobs (and, in gang mode, their workers' heartbeats); true
   * when it moved the gang (restarted or failed it).
   */
  private async reconcile(gang: TrainingState, now: number, live: ReadonlySet<string>): Promise<boolean> {
    const { spec, round, restarts } = gang;
    const key = `${spec.id}:${round}:${restarts}`;
    const every = this.deps.reconcileEveryMs ?? 5000;
    const last = this.reconciled.get(key) ?? gang.admittedAt ?? 0;
    if (now - last < every) return false;
    this.reconciled.set(key, now);
    const records = await this.store.roundRanks(spec.pool, spec.id, round, spec.workers);
    // Gang mode: a rank whose worker stopped beating is lost, and so is the gang's run; its peers would
    // wait on it until their own timeouts (a dead rank's job comes back only when its lock lapses).
    if (spec.mode === 'gang') {
      const lost = [...records].find(([, r]) => r.state === 'running' && r.restart === restarts && !live.has(r.worker));
      if (lost) {
        const [rank, r] = lost;
        const reason = `rank ${rank} of round ${round} lost: its worker ${r.worker} stopped sending heartbeats`;
        const moved = await this.store.restartGang(spec.pool, spec.id, round, restarts, reason, now);
        this.deps.logger.warn({ jobId: spec.id, round, rank, moved, reason }, 'gang rank lost');
        if (moved !== 'ignored') return true;
      }
    }
    const queue = this.queue(spec.pool);
    const missing: number[] = [];
    for (let rank = 0; rank < spec.workers; rank++) {
      const state = records.get(rank)?.state;
      if (state === 'succeeded' || state === 'failed') continue;
      const job = await queue.getJob(rankJobId(spec.id, round, rank, restarts));
      const jobState = job ? await job.getState() : undefined;
      if (!job) {
        missing.push(rank);
      } else if (jobState === 'completed' && !(await this.settled(spec, round, rank))) {
        // Completed without settling its rank (stopped, yet its gang runs on): nothing would ever run it again.
        await job.retry('completed');
        this.deps.logger.warn({ jobId: spec.id, round, rank }, 'rank job completed unsettled; run again');
      } else if (jobState === 'failed') {
        const reason = `rank ${rank} lost: ${job.failedReason ?? 'its job failed'}`;
        const settled = await this.store.settleRank(
          spec.pool,
          spec.id,
          round,
          rank,
          {
            state: 'failed',
            worker: 'scheduler',
            startedAt: records.get(rank)?.startedAt ?? now,
            endedAt: now,
            exitCode: null,
            reason,
            metrics: {},
            checkpointUri: checkpointUriFor(spec.checkpointPrefix, round, rank, spec.mode === 'gang' ? restarts : 0),
            restart: restarts,
          },
          now,
          restarts,
        );
        this.deps.logger.warn({ jobId: spec.id, round, rank, reason, settled }, 'rank job failed unsettled');
        return settled === 'gang_failed' || settled === 'gang_restarting';
      }
    }
    if (missing.length > 0) {
      await this.addRanks(spec, round, missing, restarts);
      this.deps.logger.warn(
        { jobId: spec.id, round, ranks: missing },
        'rank jobs of a running gang were missing; added',
      );
    }
    return false;
  }
}
