/**
 * How one pool's free admission window is shared among the batches that may
 * take chunks: weighted fair share across tenants by deficit round robin
 * (Shreedhar & Varghese, 1995), with a bounded boost for batches close to
 * their completion window. Pure: the carried state goes in and comes out.
 *
 * Fairness is between tenants, not batches: each tenant with admissible work
 * earns a quantum (its weight over the smallest active weight, in chunks) per
 * round and spends it on its own batches, so submitting more batches, or
 * bigger ones, buys a tenant nothing. Credit carries across passes (a window
 * that frees one chunk a pass still converges on the weights), and a tenant
 * with no work keeps no credit (no hoarding), so whatever a tenant cannot use
 * goes to the others (work-conserving).
 *
 * Priority orders a tenant's own batches only; it does not rank tenants. A
 * batch's priority is set by whoever submits it, so strict classes across
 * tenants would let any tenant take the pool by asking for priority 100;
 * what one tenant is owed relative to another is the operator's weight.
 *
 * Deadline boost: a batch is boosted when the time left is at most
 * `windowFraction` of its completion window (scale-free: a 24 h batch after
 * 21.6 h at 0.1, a 1 h batch in its last 6 minutes; the snapshot has no
 * measured chunk duration to estimate its remaining time from). Boosted
 * batches are served first, earliest deadline first, but each boosted chunk
 * is charged to its tenant's credit like any other, and a tenant may run at
 * most `maxDebtChunks` into debt for them. A boost therefore moves a tenant's
 * service earlier without enlarging it: over any stretch, a tenant gets its
 * weighted share within one quantum plus `maxDebtChunks`, however many of
 * its batches are boosted (short completion windows included). Debt is kept
 * while a tenant is idle, so it cannot be shed by pausing.
 */

/** A batch that may take chunks now. */
export interface AdmissionCandidate {
  batchId: string;
  tenant: string;
  priority: number;
  /** Chunks not yet admitted. */
  remaining: number;
  createdAt: number;
  /** The end of its completion window (createdAt + window). */
  expiresAt: number;
}

/** Why chunks were granted: the tenant's fair turn, or a deadline boost (at least one chunk boosted). */
export type AdmitReason = 'fair_share' | 'deadline_boost';

export interface ShareGrant {
  count: number;
  reason: AdmitReason;
}

/** What DRR carries from one pass to the next, per pool. */
export interface ShareState {
  /** Chunks a tenant may still take in its round (negative: boost debt). Absent = 0. */
  credit: Readonly<Record<string, number>>;
  /** The tenant whose turn comes next (null: the first by name). */
  next: string | null;
  /** Whether `next` is mid-turn: its quantum for this round was already added. */
  midTurn: boolean;
}

export const emptyShareState: ShareState = { credit: {}, next: null, midTurn: false };

/**
 * Splits `free` chunks among `candidates` (one pool's): batch id → grant (absent = nothing).
 * Returns the state to pass in next time for this pool.
 */
export type AdmissionShare = (
  candidates: readonly AdmissionCandidate[],
  free: number,
  state: ShareState,
  now: number,
) => { grants: Map<string, ShareGrant>; state: ShareState };

export interface FairShareParams {
  /** Weight per tenant; unknown tenants weigh 1. */
  weights?: Readonly<Record<string, number>>;
  /** Boosted when time left ≤ this fraction of the completion window (0: never). */
  windowFraction?: number;
  /** Most chunks a tenant may take ahead of its share through boosts. */
  maxDebtChunks?: number;
}

export const fairShareDefaults = { windowFraction: 0.1, maxDebtChunks: 16 } as const;

const isBoosted = (c: AdmissionCandidate, now: number, fraction: number): boolean =>
  fraction > 0 && c.expiresAt - now <= fraction * (c.expiresAt - c.createdAt);

const byDeadline = (a: AdmissionCandidate, b: AdmissionCandidate): number =>
  a.expiresAt - b.expiresAt || cmp(a.batchId, b.batchId);

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export function fairShare(params: FairShareParams = {}): AdmissionShare {
  const weights = params.weights ?? {};
  const fraction = params.windowFraction ?? fairShareDefaults.windowFraction;
  const maxDebt = params.maxDebtChunks ?? fairShareDefaults.maxDebtChunks;
  const weightOf = (tenant: string): number => weights[tenant] ?? 1;

  return (candidates, free, state, now) => {
    const boosted = new Set(candidates.filter((c) => isBoosted(c, now, fraction)).map((c) => c.batchId));
    // A tenant's own order: priority, then urgency (boosted first, earliest deadline), then age.
    const rank = (a: AdmissionCandidate, b: AdmissionCandidate): number =>
      b.priority - a.priority ||
      Number(boosted.has(b.batchId)) - Number(boosted.has(a.batchId)) ||
      (boosted.has(a.batchId) ? a.expiresAt - b.expiresAt : 0) ||
      a.createdAt - b.createdAt ||
      cmp(a.batchId, b.batchId);
    const queues = new Map<string, AdmissionCandidate[]>();
    for (const c of [...candidates].sort(rank)) {
      const q = queues.get(c.tenant) ?? [];
      q.push(c);
      queues.set(c.tenant, q);
    }
    const left = new Map(candidates.map((c) => [c.batchId, c.remaining]));
    const work = new Map([...queues].map(([t, q]) => [t, q.reduce((n, c) => n + c.remaining, 0)]));

    // Credit: a tenant without work now keeps only its debt.
    const credit = new Map<string, number>();
    for (const [t, v] of Object.entries(state.credit)) if (v < 0 || work.has(t)) credit.set(t, v);
    const creditOf = (t: string): number => credit.get(t) ?? 0;

    const grants = new Map<string, ShareGrant>();
    const grant = (c: AdmissionCandidate, n: number, reason: AdmitReason): void => {
      const g = grants.get(c.batchId);
      grants.set(c.batchId, {
        count: (g?.count ?? 0) + n,
        reason: g?.reason === 'deadline_boost' ? g.reason : reason,
      });
      left.set(c.batchId, left.get(c.batchId)! - n);
      work.set(c.tenant, work.get(c.tenant)! - n);
      credit.set(c.tenant, creditOf(c.tenant) - n);
      free -= n;
    };
    /** Up to n chunks of a tenant's batches, in its order. */
    const serveTenant = (tenant: string, n: number): void => {
      for (const c of queues.get(tenant)!) {
        if (n <= 0) break;
        const k = Math.min(n, left.get(c.batchId)!);
        if (k > 0) grant(c, k, 'fair_share');
        n -= k;
      }
    };

    // 1. Boosted batches, earliest deadline first, each tenant within its debt limit.
    for (const c of candidates.filter((x) => boosted.has(x.batchId)).sort(byDeadline)) {
      const n = Math.min(free, left.get(c.batchId)!, Math.floor(creditOf(c.tenant) + maxDebt));
      if (n > 0) grant(c, n, 'deadline_boost');
    }

    // 2. Deficit round robin over the tenants with work, in name order, resuming where the last pass stopped.
    const tenants = [...queues.keys()].sort(cmp);
    const minWeight = Math.min(...tenants.map(weightOf));
    let i = tenants.findIndex((t) => state.next !== null && t >= state.next);
    if (i < 0) i = 0;
    let midTurn = state.midTurn && tenants[i] === state.next;
    let next = state.next;
    while (free > 0 && tenants.some((t) => work.get(t)! > 0)) {
      const t = tenants[i]!;
      if (work.get(t)! > 0) {
        if (!midTurn) credit.set(t, creditOf(t) + weightOf(t) / minWeight);
        serveTenant(t, Math.min(free, Math.floor(creditOf(t))));
      }
      midTurn = false;
      if (free === 0 && work.get(t)! > 0 && creditOf(t) >= 1) {
        // The window ran out within t's turn: it resumes next pass without a new quantum.
        next = t;
        midTurn = true;
        break;
      }
      // Classic DRR: a tenant whose work ran out keeps no credit (its debt stays).
      if (work.get(t)! <= 0) credit.set(t, Math.min(0, creditOf(t)));
      i = (i + 1) % tenants.length;
      next = tenants[i]!;
    }

    const out: Record<string, number> = {};
    for (const [t, v] of credit) if (v !== 0) out[t] = v;
    return { grants, state: { credit: out, next, midTurn } };
  };
}
