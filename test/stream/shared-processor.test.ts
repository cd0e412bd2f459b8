// SharedStateProcessor against a real LMDB shared store whose reads and writes the test can hold
// back: the interleavings a slow store (a Cassandra stall) and a group rejoin produce, made exact.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmdbSharedStates, type SharedStateStore, type SharedUserRow } from '../../src/stream/shared-state.js';
import { SharedStateProcessor } from '../../src/stream/shared-processor.js';
import type { ValidEvent } from '../../src/stream/types.js';
import type { StoredVector } from '../../src/store/types.js';
import { fakeHead, SHORT_FEATURE } from './helpers.js';

/** A gate: calls wait at it while it is closed. */
class Gate {
  private waiters: (() => void)[] = [];
  closed = false;
  waiting = 0;
  close(): void {
    this.closed = true;
  }
  open(): void {
    this.closed = false;
    for (const w of this.waiters.splice(0)) w();
  }
  async pass(): Promise<void> {
    if (!this.closed) return;
    this.waiting++;
    await new Promise<void>((r) => this.waiters.push(r));
    this.waiting--;
  }
}

/** The real store, with gates in front of its reads and writes. */
class HeldStates implements SharedStateStore {
  readonly kind = 'held-lmdb';
  readonly reads = new Gate();
  readonly writes = new Gate();
  constructor(private readonly inner: LmdbSharedStates) {}
  async read(userIds: readonly string[]): Promise<Map<string, SharedUserRow>> {
    await this.reads.pass();
    return this.inner.read(userIds);
  }
  async write(featureId: string, rows: readonly SharedUserRow[]): Promise<void> {
    await this.writes.pass();
    return this.inner.write(featureId, rows);
  }
  vectors(featureId: string, userIds: readonly string[]): Promise<(StoredVector | undefined)[]> {
    return this.inner.vectors(featureId, userIds);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(cond()).toBe(true);
};

const ev = (i: number, userId: string): ValidEvent => ({ eventId: `${userId}-${i}`, userId, app: i, type: 1, timestampMs: 1000 + i });

describe('SharedStateProcessor under a slow store', () => {
  let dir: string | undefined;
  let states: HeldStates | undefined;
  afterEach(async () => {
    await states?.close();
    states = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  /** A processor over a fresh LMDB shared store behind gates; `unit` submits events at the given offsets of partition 0. */
  function setup() {
    dir = mkdtempSync(join(tmpdir(), 'aetn-shared-proc-'));
    const lmdb = new LmdbSharedStates(dir);
    const held = (states = new HeldStates(lmdb));
    const p = new SharedStateProcessor({ states: held, head: fakeHead, featureId: SHORT_FEATURE, maxEvents: 4 });
    const unit = (events: ValidEvent[], offsets: number[]) =>
      p.submit({ events, offsets, offset: { topic: 't', partition: 0, appliedBefore: offsets[0]! - 1, lastOffset: offsets[offsets.length - 1]! } });
    return { lmdb, states: held, p, unit };
  }

  it('a rejoin while a unit reads does not drop the unsaved rows it builds on', async () => {
    const { lmdb, states, p, unit } = setup();
    // Unit 1 applies alice's first three events; its write is held (not durable yet).
    states.writes.close();
    const u1 = unit([ev(0, 'alice'), ev(1, 'alice'), ev(2, 'alice')], [0, 1, 2]);
    await until(() => states.writes.waiting === 1);
    // Unit 2 builds on unit 1's unsaved row for alice and reads bob from the store: held.
    states.reads.close();
    const u2 = unit([ev(3, 'alice'), ev(0, 'bob')], [3, 4]);
    await until(() => states.reads.waiting === 1);
    // The consumer rejoins its group while unit 2 waits for its read.
    p.newAssignment();
    states.reads.open();
    states.writes.open();
    await Promise.all([u1, u2]);

    const alice = (await lmdb.read(['alice'])).get('alice')!;
    expect(alice.version).toBe(3);
    // Before the fix, unit 2 restarted alice from an empty window: 1 event under version 3.
    expect(alice.state.applied).toBe(4);
    expect(alice.state.events.map((e) => e.eventId)).toEqual(['alice-0', 'alice-1', 'alice-2', 'alice-3']);
    expect((await lmdb.read(['bob'])).get('bob')!.state.applied).toBe(1);
  });

  it('a unit of the previous generation that has not applied yet is dropped, so its read cannot miss unwritten rows', async () => {
    const { lmdb, states, p, unit } = setup();
    // Unit 1: alice's events at offsets 0 and 1, applied; its write is held.
    states.writes.close();
    const u1 = unit([ev(0, 'alice'), ev(1, 'alice')], [0, 1]);
    await until(() => states.writes.waiting === 1);
    // Unit 2 (bob) waits for its read; unit 3 (alice again) waits behind it, not applied yet.
    states.reads.close();
    const u2 = unit([ev(2, 'bob')], [2]);
    const u3 = unit([ev(3, 'alice')], [3]);
    await until(() => states.reads.waiting === 1);
    // The consumer rejoins its group: unit 1's row leaves the cache before it is durable.
    p.newAssignment();
    states.reads.open();
    // Unit 3 must not apply: a read now would find no row for alice and restart her window.
    // (Had it applied, it would now wait for its held write: a unit that settles at once did not.)
    const r3 = await Promise.race([u3, new Promise<'still writing'>((r) => setTimeout(() => r('still writing'), 2000))]);
    expect(r3).toMatchObject({ conflict: true, applied: 0 });
    states.writes.open();
    await Promise.all([u1, u2]);
    const alice = (await lmdb.read(['alice'])).get('alice')!;
    expect([alice.version, alice.state.applied]).toEqual([1, 2]);
    // The new generation gets offset 3 again and applies it on the durable row.
    expect((await unit([ev(3, 'alice')], [3])).applied).toBe(1);
    const after = (await lmdb.read(['alice'])).get('alice')!;
    expect([after.version, after.state.applied]).toEqual([3, 3]);
  });
});
