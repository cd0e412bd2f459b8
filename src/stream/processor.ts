// The one processing path of the realtime head, whatever the transport: validated events ->
// dedupe by event id against each user's window -> state update -> the head for the users whose
// state changed -> states, vectors (and, for Kafka, the partition's applied offset) in one LMDB
// transaction. The Kafka pipeline (pipeline.ts, after decoding and DLQ routing) and the
// EventService's DirectSink both call `submit`, so validation-free logic, windowing and
// idempotence are the same code.
//
// Throughput without giving up durability:
//   - `submit` applies the events at once (synchronously) and remembers the new states in an
//     overlay until their transaction commits, so the next submit for the same user builds on
//     them without waiting for the disk;
//   - the head runs while earlier units are still committing (an async head, e.g. a worker pool,
//     overlaps with the event loop);
//   - transactions are queued in the order the units were applied (a later unit's state contains
//     the earlier one's events, so it must not land first) through store.transaction, which
//     lmdb-js groups: all units queued while one commit is in progress share the next commit and
//     its fsync, on lmdb-js's write thread;
//   - a unit's promise resolves only once its transaction is durable. Callers acknowledge (gRPC)
//     or resolve Kafka offsets only then.
// A failure (head, store) rejects that unit and every unit applied after it that is still in
// flight (their states were built on it), never the units applied before it; it drops the
// overlay, and new units start once what was queued before has committed, so nothing reads a
// state that will never exist.
import { UserError } from '../util/errors.js';
import type { PipelineStore } from './pipeline.js';
import { applyEvents, StateDb, DEFAULT_MAX_EVENTS } from './state.js';
import { openForgotten } from '../store/store.js';
import { DEFAULT_CAPS, headState, type TimelineCaps } from './timeline.js';
import type { Database } from 'lmdb';
import type { HeadFn, RecentEvents, ValidEvent } from './types.js';

export interface ProcessorOptions {
  store: PipelineStore;
  head: HeadFn;
  /** The short-term feature id the vectors are written under (registered in the store). */
  featureId: string;
  maxEvents?: number;
  /** The training caps applied to the head's input (src/stream/timeline.ts); default 10 per week, 25 + 25. */
  timelineCaps?: TimelineCaps;
  /** The processing clock (tests inject one); default Date.now. */
  now?: () => number;
}

/** Kafka progress written in the unit's transaction (exactly-once across crashes and rebalances). */
export interface OffsetMark {
  topic: string;
  partition: number;
  /** The applied offset the unit was computed against; any other value in the store is a conflict. */
  appliedBefore: number;
  /** The last offset this unit covers (DLQ'd and skipped messages included). */
  lastOffset: number;
}

export interface UnitInput {
  events: readonly ValidEvent[];
  /** Kafka produce time of each event (parallel to `events`), reported back for the applied ones. */
  produceTimesMs?: readonly number[];
  /** Kafka offset of each event (parallel to `events`): the shared state checks them per user. */
  offsets?: readonly number[];
  offset?: OffsetMark;
}

export interface ProcessResult {
  /** Events new for their user (now durable). */
  applied: number;
  /** Events whose id was already in the user's window (changed nothing). */
  duplicates: number;
  /** Users whose state and vector were rewritten. */
  users: string[];
}

export interface UnitResult extends ProcessResult {
  /** Produce times of the events of users whose vector was rewritten (freshness). */
  produceTimesMs: number[];
  durableAtMs: number;
  /**
   * Kafka only: the partition's applied offset in the store was not `offset.appliedBefore` (another
   * consumer applied it during a rebalance, or an earlier unit of this partition conflicted).
   * Nothing was written; re-read the applied offset and redo.
   */
  conflict: boolean;
  /** Shared state only: events at or below their user's applied offset (a redelivery), not applied again. */
  skipped?: number;
}

/**
 * What the Kafka pipeline needs of the processing behind it: EventProcessor (the embedded LMDB
 * store, offsets per partition) or SharedStateProcessor (state shared by a consumer group, offsets
 * per user).
 */
export interface UnitProcessor {
  submit(input: UnitInput): Promise<UnitResult>;
  /** The partition's applied offset known to this processor (-1: none; messages at or below it are skipped). */
  appliedOffset(topic: string, partition: number): number;
  clearConflict(topic: string, partition: number): void;
  isForgotten(userId: string): boolean;
  /** A user's stored window, where it can be read synchronously (tools and tests). */
  state(userId: string): RecentEvents | undefined;
  /** The consumer joined the group again (a rebalance): nothing cached from before may be trusted. */
  newAssignment?(): void;
}

const CONFLICT = Symbol('conflict');
const STALE = Symbol('stale');

export class EventProcessor implements UnitProcessor {
  readonly stateDb: StateDb;
  /** Tombstones of erased users: checked at the edge (DLQ) and again inside each transaction. */
  private readonly forgotten: Database<number, string>;
  private readonly maxEvents: number;
  /** States applied but not yet durable, newest per user. */
  private readonly overlay = new Map<string, RecentEvents>();
  /** Resolves when the previously submitted unit has queued its transaction (or failed). */
  private queueTail: Promise<void> = Promise.resolve();
  /** The last queued transaction; lmdb-js commits in queue order, so it covers all before it. */
  private lastTxn: Promise<unknown> = Promise.resolve();
  /** Apply order of units. */
  private nextSeq = 0;
  /**
   * Failures as [failed unit, first unit applied after the overlay was dropped): the units in
   * between built on the failed one and are refused. Failures are rare; the list is capped.
   */
  private readonly poisoned: [number, number][] = [];
  /** After a failure, new units wait for this (everything queued before it durable) before reading. */
  private barrier: Promise<unknown> | undefined;
  /** Partitions with a conflicted unit: the units queued after it in that partition conflict too. */
  private readonly conflicted = new Set<string>();
  private readonly counters = { units: 0 };

  constructor(private readonly opts: ProcessorOptions) {
    this.maxEvents = opts.maxEvents ?? DEFAULT_MAX_EVENTS;
    if (!Number.isInteger(this.maxEvents) || this.maxEvents < 1 || this.maxEvents > 255) {
      throw new UserError(`maxEvents must be an integer in 1..255, got ${opts.maxEvents}`);
    }
    this.stateDb = new StateDb(opts.store.root);
    this.forgotten = openForgotten(opts.store.root);
  }

  /** Whether the user was erased; their events must not be applied (callers DLQ them). */
  isForgotten(userId: string): boolean {
    return this.forgotten.doesExist(userId);
  }

  /** Applies `events` (the direct path); resolves once their effects are committed to disk. */
  async process(events: readonly ValidEvent[]): Promise<ProcessResult> {
    const r = await this.submit({ events });
    return { applied: r.applied, duplicates: r.duplicates, users: r.users };
  }

  /**
   * Applies one unit. The state update happens before this returns (so call order is apply
   * order); the promise resolves when the unit is durable.
   */
  submit(input: UnitInput): Promise<UnitResult> {
    if (this.barrier) {
      const b = this.barrier;
      return b.then(() => {
        if (this.barrier === b) this.barrier = undefined;
        return this.submit(input);
      });
    }
    const nowMs = (this.opts.now ?? Date.now)();
    const seq = this.nextSeq++;
    const byUser = new Map<string, { events: ValidEvent[]; times: number[] }>();
    const times = input.produceTimesMs;
    for (let i = 0; i < input.events.length; i++) {
      const e = input.events[i]!;
      let g = byUser.get(e.userId);
      if (!g) byUser.set(e.userId, (g = { events: [], times: [] }));
      g.events.push(e);
      if (times) g.times.push(times[i]!);
    }
    const changed: RecentEvents[] = [];
    const changedTimes: number[] = [];
    let applied = 0;
    let duplicates = 0;
    for (const [userId, g] of byUser) {
      const res = applyEvents(this.current(userId), userId, g.events, this.maxEvents, nowMs);
      applied += res.applied;
      duplicates += res.duplicates;
      if (res.applied > 0) {
        changed.push(res.state);
        this.overlay.set(userId, res.state);
        for (const t of g.times) changedTimes.push(t);
      }
    }
    const users = changed.map((s) => s.userId);
    // A unit with nothing to write (all duplicates) still goes through the queue: the events it
    // duplicates may belong to a unit not yet durable, and it must not be acknowledged before.
    // Started now: the head of this unit overlaps with earlier units' commits.
    // A macrotask, not a microtask: several units in flight with a synchronous head would
    // otherwise run their forward passes back to back, starving Kafka heartbeats and fetches.
    const vectorsP = changed.length > 0 ? new Promise<void>((r) => setImmediate(r)).then(() => this.opts.head(changed.map((s) => headState(s, nowMs, this.opts.timelineCaps ?? DEFAULT_CAPS)), nowMs)) : Promise.resolve([] as Float32Array[]);
    const prev = this.queueTail;
    let markQueued!: () => void;
    this.queueTail = new Promise<void>((r) => (markQueued = r));
    const run = async (): Promise<UnitResult> => {
      let txn: Promise<unknown> | undefined;
      try {
        const head = await vectorsP.then(
          (v) => ({ v, err: undefined }),
          (err: unknown) => ({ v: undefined, err }),
        );
        // Failures are handled in apply order: a unit's failure must not reject the units
        // applied before it, which are sound.
        await prev;
        if (this.isPoisoned(seq)) throw new Error('not applied: an earlier batch this one builds on failed');
        if (head.err !== undefined) throw head.err;
        const vectors = head.v;
        if (!Array.isArray(vectors) || vectors.length !== changed.length) {
          throw new Error(`realtime head returned ${Array.isArray(vectors) ? vectors.length : typeof vectors} vectors for ${changed.length} users`);
        }
        const { featureId, store } = this.opts;
        const off = input.offset;
        const pkey = off ? `${off.topic}\u0000${off.partition}` : '';
        txn = store.transaction(() => {
          // Inside the write transaction: serialised with every other writer, so a consumer that
          // overlapped with us in a rebalance cannot both apply this range.
          // A unit queued before us in this same batch failed inside its callback: we built on it.
          if (this.isPoisoned(seq)) return STALE;
          if (off && (this.conflicted.has(pkey) || this.stateDb.appliedOffset(off.topic, off.partition) !== off.appliedBefore)) {
            this.conflicted.add(pkey);
            return CONFLICT;
          }
          try {
            for (let i = 0; i < changed.length; i++) {
              // Forgotten after its events passed the edge check: the erasure wins, nothing is written.
              if (this.forgotten.doesExist(changed[i]!.userId)) continue;
              this.stateDb.putInTxn(changed[i]!);
              store.putInTxn(featureId, changed[i]!.userId, vectors[i]!);
            }
            if (off) this.stateDb.setAppliedOffsetInTxn(off.topic, off.partition, off.lastOffset);
          } catch (err) {
            this.fail(seq); // at once, so the units after us in this batch see it
            throw err;
          }
          return undefined;
        });
        this.lastTxn = txn;
        markQueued();
        const result = await txn;
        if (result === STALE) throw new Error('not applied: an earlier batch this one builds on failed');
        this.counters.units++;
        this.release(changed);
        const durableAtMs = Date.now();
        if (result === CONFLICT) return { applied: 0, duplicates: 0, users: [], produceTimesMs: [], durableAtMs, conflict: true };
        return { applied, duplicates, users, produceTimesMs: changedTimes, durableAtMs, conflict: false };
      } catch (err) {
        if (!txn) markQueued();
        this.fail(seq);
        throw err;
      }
    };
    return run();
  }

  /** Forget a conflict of `topic`/`partition` (the caller re-reads the applied offset and redoes). */
  clearConflict(topic: string, partition: number): void {
    this.conflicted.delete(`${topic}\u0000${partition}`);
  }

  /** The user's window including applied-but-not-yet-durable events. */
  current(userId: string): RecentEvents | undefined {
    return this.overlay.get(userId) ?? this.stateDb.get(userId);
  }

  /** The user's recent-events window as stored (for checks and tools). */
  state(userId: string): RecentEvents | undefined {
    return this.stateDb.get(userId);
  }

  /** The last applied offset of a partition as stored. */
  appliedOffset(topic: string, partition: number): number {
    return this.stateDb.appliedOffset(topic, partition);
  }

  /** Units whose transaction has committed (or conflicted). */
  get unitsDone(): number {
    return this.counters.units;
  }

  /** Resolves once everything queued so far is durable (or failed). */
  async drain(): Promise<void> {
    await this.queueTail;
    await this.lastTxn.catch(() => undefined);
  }

  private release(states: RecentEvents[]): void {
    // Durable (or, on conflict, never to be): later reads go to LMDB, unless a newer state is pending.
    for (const s of states) if (this.overlay.get(s.userId) === s) this.overlay.delete(s.userId);
  }

  private isPoisoned(seq: number): boolean {
    for (const [failed, reset] of this.poisoned) if (seq > failed && seq < reset) return true;
    return false;
  }

  private fail(seq: number): void {
    if (this.isPoisoned(seq)) return; // a consequence of an earlier failure, already handled
    if (this.poisoned.some(([failed]) => failed === seq)) return;
    this.poisoned.push([seq, this.nextSeq]);
    if (this.poisoned.length > 1000) this.poisoned.shift();
    // Units applied before this one are sound but may not be durable yet; their states leave
    // the overlay too, so new units wait (barrier) until everything queued so far has committed.
    this.overlay.clear();
    const queued = this.lastTxn.catch(() => undefined);
    this.barrier = queued;
  }
}
