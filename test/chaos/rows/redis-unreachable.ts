/**
 * Row: Redis unreachable. Every role reaches Redis through the TCP proxy (test/chaos/proxy.ts),
 * which is cut in `stall` mode (connections stay open, nothing passes either way: a partition
 * that swallows packets, the case timeouts must catch) for 5 s, then, in the full form, for 40 s;
 * the roles are not restarted. Under the steady load and a trickle of batch submissions (one
 * every 500 ms). Must hold: every request sent during an outage is answered, each refusal a 503
 * (or 429) with Retry-After within 1 s (the producer's Redis command timeout, 500 ms, + 500 ms
 * slack for a loaded machine); one whose job got through before the cut may be answered 2xx
 * later (its reply waits for Redis), and the slowest answer of any kind is reported too; no
 * request hangs (an answer within its deadline + 15 s); nothing accepted before or during is
 * lost or written twice; every role resumes after
 * (the producer answers a chat with 2xx, each worker writes a heartbeat, the scheduler renews
 * its lease) within 20 s, none restarted.
 */
import { startChaosFleet } from '../fleet.ts';
import { SteadyLoad, type RtOutcome } from '../load.ts';
import { seconds, waitResumed, type Resumed } from '../resume.ts';
import type { ChaosRow } from '../types.ts';

const COMMAND_TIMEOUT_MS = 500; // producer.redisCommandTimeoutMs, the default
const ANSWER_SLACK_MS = 500;
const ANSWER_BOUND_MS = COMMAND_TIMEOUT_MS + ANSWER_SLACK_MS;
const LEASE_TTL_MS = 2000;
const RESUME_LIMIT_MS = 20_000;

interface Outage {
  ms: number;
  from: number;
  to: number;
  resumed: Resumed;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** What the answers to requests sent during an outage say, read once every request has ended. */
function answers(during: RtOutcome[]) {
  const answered = during.filter((o) => o.status > 0);
  const refused = answered.filter((o) => o.status === 503 || o.status === 429);
  const other = answered.filter((o) => o.status >= 300 && o.status !== 503 && o.status !== 429);
  const slowest = answered.reduce<RtOutcome | undefined>((a, o) => (a && a.ms >= o.ms ? a : o), undefined);
  return {
    sent: during.length,
    /** The slowest refusal: what the bound is about. */
    slowestRefusalMs: Math.max(0, ...refused.map((o) => o.ms)),
    /** The slowest answer of any kind, and its status (a request whose job got through before the cut waits for its reply). */
    slowest: slowest ? `${slowest.ms.toFixed(0)} ms (${slowest.status})` : 'none',
    unanswered: during.length - answered.length,
    refused: refused.length,
    noRetryAfter: refused.filter((o) => !o.retryAfter).length,
    ok: answered.filter((o) => o.status < 300).length,
    other: [...new Set(other.map((o) => o.status))],
  };
}

export const redisUnreachable: ChaosRow = {
  id: 'redis-unreachable',
  fault: 'Redis unreachable (TCP proxy stalls every connection) 5 s, then 40 s',
  mustHold:
    'the producer answers 503 + Retry-After within 1 s; no request hangs; nothing accepted before or during is lost; every role resumes after',
  async run(env) {
    const fleet = await startChaosFleet(env, { workers: 2, proxy: true });
    try {
      const load = await SteadyLoad.start(fleet, env, {
        linesPerBatch: env.mode === 'short' ? 64 : 96,
        trickle: { everyMs: 500, lines: 4 },
      });
      await sleep(5000);
      const outages: Outage[] = [];
      for (const ms of env.mode === 'short' ? [5000] : [5000, 40_000]) {
        const from = Date.now();
        fleet.proxy!.cut('stall');
        env.log(`proxy stalls every connection to Redis for ${ms / 1000} s`);
        await sleep(ms);
        fleet.proxy!.restore();
        const to = Date.now();
        const resumed = await waitResumed(fleet, load, to, LEASE_TTL_MS, RESUME_LIMIT_MS + 5000);
        env.log(
          `restored; resumed: producer ${seconds(resumed.producerMs)}, workers ${seconds(resumed.workersMs)}, scheduler ${seconds(resumed.schedulerMs)}`,
        );
        outages.push({ ms, from, to, resumed });
        await sleep(3000);
      }
      const tally = await load.settle(env.mode === 'short' ? 150_000 : 240_000);
      const words: string[] = [];
      let holds = tally.lost === 0 && tally.duplicated === 0;
      let recoveryMs: number | null = 0;
      for (const o of outages) {
        const rt = answers(load.rtSince(o.from, o.to));
        const sub = answers(load.submits.filter((s) => s.sentAt >= o.from && s.sentAt < o.to));
        const slowest = Math.max(rt.slowestRefusalMs, sub.slowestRefusalMs);
        const { producerMs, workersMs, schedulerMs, exited } = o.resumed;
        const times = [producerMs, workersMs, schedulerMs];
        const resumedIn = times.some((t) => t === undefined) ? null : Math.max(...(times as number[]));
        const ok =
          slowest <= ANSWER_BOUND_MS &&
          rt.unanswered + sub.unanswered === 0 &&
          rt.noRetryAfter + sub.noRetryAfter === 0 &&
          rt.other.length + sub.other.length === 0 &&
          resumedIn !== null &&
          resumedIn <= RESUME_LIMIT_MS &&
          exited.length === 0;
        holds &&= ok;
        recoveryMs = resumedIn === null || recoveryMs === null ? null : Math.max(recoveryMs, resumedIn);
        words.push(
          `${o.ms / 1000} s stall: slowest 503/429 ${slowest.toFixed(0)} ms (bound ${ANSWER_BOUND_MS}: command timeout ${COMMAND_TIMEOUT_MS} + ${ANSWER_SLACK_MS} slack), slowest answer of any kind: rt ${rt.slowest}, batch submit ${sub.slowest}; ` +
            `rt sent ${rt.sent}: ${rt.refused} refused (${rt.noRetryAfter} without Retry-After), ${rt.ok} ok, ${rt.unanswered} unanswered${rt.other.length ? `, other ${rt.other.join('/')}` : ''}; ` +
            `batch submits ${sub.sent}: ${sub.refused} refused (${sub.noRetryAfter} without Retry-After), ${sub.ok} accepted, ${sub.unanswered} unanswered${sub.other.length ? `, other ${sub.other.join('/')}` : ''}; ` +
            `resumed: producer ${seconds(producerMs)}, workers ${seconds(workersMs)}, scheduler ${seconds(schedulerMs)}${exited.length ? `; exited: ${exited.join(', ')}` : ''}`,
        );
      }
      if (tally.training?.status !== 'succeeded') words.push(`training ${tally.training?.status ?? 'unread'}`);
      return {
        load: load.describe(),
        lost: tally.lost,
        duplicated: tally.duplicated,
        recoveryMs,
        holds,
        detail: `${words.join(' | ')}; ${tally.summary}`,
      };
    } finally {
      await fleet.stop();
    }
  },
};
