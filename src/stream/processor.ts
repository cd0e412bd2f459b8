// Transport-agnostic application of validated events: per-user state, the realtime head for the
// users touched, and the short-term vectors, committed in one LMDB transaction. The EventService
// uses it when no Kafka is configured. It is built from the very pieces the Kafka pipeline uses
// (applyEvents, StateDb, the HeadFn), so validation, windowing and idempotence by event id are the
// same; the pipeline itself is not yet refactored onto it (it also tracks Kafka offsets).
import { UserError } from '../util/errors.js';
import type { PipelineStore } from './pipeline.js';
import { applyEvents, StateDb, DEFAULT_MAX_EVENTS } from './state.js';
import type { HeadFn, RecentEvents, ValidEvent } from './types.js';

export interface ProcessorOptions {
  store: PipelineStore;
  head: HeadFn;
  /** The short-term feature id the vectors are written under (registered in the store). */
  featureId: string;
  maxEvents?: number;
}

export interface ProcessResult {
  /** Events new for their user (now durable). */
  applied: number;
  /** Events whose id was already in the user's window (changed nothing). */
  duplicates: number;
  /** Users whose state and vector were rewritten. */
  users: string[];
}

export class EventProcessor {
  private readonly stateDb: StateDb;
  private readonly maxEvents: number;
  /** Calls run one after another: state is read outside the transaction, so two overlapping
   *  calls for one user would otherwise each miss the other's events. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: ProcessorOptions) {
    this.maxEvents = opts.maxEvents ?? DEFAULT_MAX_EVENTS;
    if (!Number.isInteger(this.maxEvents) || this.maxEvents < 1 || this.maxEvents > 255) {
      throw new UserError(`maxEvents must be an integer in 1..255, got ${opts.maxEvents}`);
    }
    this.stateDb = new StateDb(opts.store.root);
  }

  /** Applies `events`; resolves once their effects are committed to disk. */
  process(events: readonly ValidEvent[]): Promise<ProcessResult> {
    const run = this.tail.then(() => this.processNow(events));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** The user's recent-events window as stored (for checks and tools). */
  state(userId: string): RecentEvents | undefined {
    return this.stateDb.get(userId);
  }

  private async processNow(events: readonly ValidEvent[]): Promise<ProcessResult> {
    const nowMs = Date.now();
    const byUser = new Map<string, ValidEvent[]>();
    for (const e of events) {
      let list = byUser.get(e.userId);
      if (!list) byUser.set(e.userId, (list = []));
      list.push(e);
    }
    const changed: RecentEvents[] = [];
    let applied = 0;
    let duplicates = 0;
    for (const [userId, list] of byUser) {
      const res = applyEvents(this.stateDb.get(userId), userId, list, this.maxEvents, nowMs);
      applied += res.applied;
      duplicates += res.duplicates;
      if (res.applied > 0) changed.push(res.state);
    }
    if (changed.length === 0) return { applied, duplicates, users: [] };
    const vectors = await this.opts.head(changed, nowMs);
    if (!Array.isArray(vectors) || vectors.length !== changed.length) {
      throw new Error(`realtime head returned ${Array.isArray(vectors) ? vectors.length : typeof vectors} vectors for ${changed.length} users`);
    }
    const { featureId, store } = this.opts;
    await store.transaction(() => {
      for (let i = 0; i < changed.length; i++) {
        this.stateDb.putInTxn(changed[i]!);
        store.putInTxn(featureId, changed[i]!.userId, vectors[i]!);
      }
    });
    return { applied, duplicates, users: changed.map((s) => s.userId) };
  }
}
