// Realtime state shared by every consumer of one Kafka consumer group, in any process on any
// machine: each user's row holds the recent-events window, the short-term vector and the offsets
// of that user's events already applied, per partition. A row is versioned by the Kafka offset of
// the last event it contains, and a store keeps, per row, the write with the highest version:
//
//   - the state of a user at version T is a function of that user's events up to offset T of its
//     partition, whoever computed it, so two writers of the same version write the same events;
//   - a consumer that lost its partition (a zombie) and still writes a unit it computed before
//     writes an older version, which loses against the newer owner's, or the same version;
//   - an event at or below the row's applied offset of its partition is skipped, so a partition
//     redelivered after a crash or a rebalance (Kafka offsets are committed only after the write)
//     is applied once.
//
// Two stores implement it: LmdbSharedStates (one host, several processes: LMDB serialises its
// writers across processes) and the Cassandra table `states` (src/stream/cassandra-states.ts),
// where the version is the write's timestamp and the row is one partition written atomically.
import { open, type Database, type RootDatabase } from 'lmdb';
import { mkdirSync } from 'node:fs';
import { UserError } from '../util/errors.js';
import type { RecentEvents } from './types.js';
import type { StoredVector } from '../store/types.js';

/** One user's row as stored. */
export interface SharedUserRow {
  state: RecentEvents;
  /** Kafka partition -> offset of the last of this user's events applied from it. */
  applied: Map<number, number>;
  /** The short-term vector computed from `state`. */
  vector: Float32Array;
  /** The row's version: the offset of the newest event it contains. */
  version: number;
}

export interface SharedStateStore {
  readonly kind: string;
  /** The users' rows (absent: never written, or erased). Each row is read whole. */
  read(userIds: readonly string[]): Promise<Map<string, SharedUserRow>>;
  /**
   * Writes each row whole and atomically, durable when the promise resolves. A row whose stored
   * version is higher than the written one keeps the stored one (last version wins).
   */
  write(featureId: string, rows: readonly SharedUserRow[]): Promise<void>;
  /**
   * The short-term vectors of `featureId` of these users, for the serving path (the time of the
   * user's last change as updatedAtMs).
   */
  vectors(featureId: string, userIds: readonly string[]): Promise<(StoredVector | undefined)[]>;
  close(): Promise<void>;
}

// Stored form, shared by both stores (the Cassandra table keeps the same blob in `events`):
//   u8 version=1 | u8 count | u32 applied | f64 updatedAtMs | count x (i32 app | u8 type | f64 ts | u16 idLen | id utf8)
const BLOB_VERSION = 1;
const HEAD = 14;

export function encodeEvents(s: RecentEvents): Buffer {
  if (s.events.length > 255) throw new Error(`recent-events window of ${s.events.length} events exceeds 255`);
  let size = HEAD;
  for (const e of s.events) size += 15 + Buffer.byteLength(e.eventId, 'utf8');
  const b = Buffer.allocUnsafe(size);
  b.writeUInt8(BLOB_VERSION, 0);
  b.writeUInt8(s.events.length, 1);
  b.writeUInt32LE(Math.min(s.applied, 0xffffffff), 2);
  b.writeDoubleLE(s.updatedAtMs, 6);
  let o = HEAD;
  for (const e of s.events) {
    b.writeInt32LE(e.app, o);
    b.writeUInt8(e.type, o + 4);
    b.writeDoubleLE(e.timestampMs, o + 5);
    const len = b.write(e.eventId, o + 15, 'utf8');
    b.writeUInt16LE(len, o + 13);
    o += 15 + len;
  }
  return b;
}

export function decodeEvents(userId: string, b: Buffer): RecentEvents {
  if (b.length < HEAD || b.readUInt8(0) !== BLOB_VERSION) throw new Error(`shared state of user ${userId} is damaged or of an unknown version`);
  const n = b.readUInt8(1);
  const events: RecentEvents['events'] = new Array(n);
  let o = HEAD;
  for (let i = 0; i < n; i++) {
    const len = b.readUInt16LE(o + 13);
    events[i] = { app: b.readInt32LE(o), type: b.readUInt8(o + 4) as 1 | 2, timestampMs: b.readDoubleLE(o + 5), eventId: b.toString('utf8', o + 15, o + 15 + len) };
    o += 15 + len;
  }
  return { userId, applied: b.readUInt32LE(2), updatedAtMs: b.readDoubleLE(6), events };
}

/** The state's time of last change, read from the blob's header without decoding its events. */
export function updatedAtOf(b: Buffer): number {
  if (b.length < HEAD || b.readUInt8(0) !== BLOB_VERSION) throw new Error('shared state is damaged or of an unknown version');
  return b.readDoubleLE(6);
}

export function vectorBytes(v: Float32Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

export function bytesVector(b: Buffer): Float32Array {
  const out = new Float32Array(b.byteLength / 4);
  Buffer.from(out.buffer).set(b);
  return out;
}

interface LmdbRow {
  events: Buffer;
  applied: [number, number][];
  featureId: string;
  v: Buffer;
  version: number;
}

/**
 * The shared state in an LMDB environment of its own, opened by every consumer process of one host
 * (LMDB allows many processes; its write transactions are serialised across them). The version
 * check runs inside the write transaction, so it is the same last-version-wins rule as Cassandra's.
 */
export class LmdbSharedStates implements SharedStateStore {
  readonly kind = 'lmdb';
  private readonly root: RootDatabase;
  private readonly rows: Database<LmdbRow, string>;

  constructor(readonly dir: string) {
    if (!dir) throw new UserError('shared state directory is empty');
    mkdirSync(dir, { recursive: true });
    this.root = open({ path: dir, maxDbs: 4, noSync: false });
    this.rows = this.root.openDB<LmdbRow, string>({ name: 'shared-states', encoding: 'msgpack' });
  }

  async read(userIds: readonly string[]): Promise<Map<string, SharedUserRow>> {
    const out = new Map<string, SharedUserRow>();
    const got = await this.rows.getMany(userIds as string[]);
    for (let i = 0; i < userIds.length; i++) {
      const r = got[i];
      if (r) out.set(userIds[i]!, fromLmdb(userIds[i]!, r));
    }
    return out;
  }

  async write(featureId: string, rows: readonly SharedUserRow[]): Promise<void> {
    await this.rows.transaction(() => {
      for (const row of rows) {
        const id = row.state.userId;
        const cur = this.rows.get(id);
        if (cur && cur.version > row.version) continue; // a newer owner wrote it: ours is older
        this.rows.putSync(id, { events: encodeEvents(row.state), applied: [...row.applied], featureId, v: vectorBytes(row.vector), version: row.version });
      }
    });
  }

  async vectors(featureId: string, userIds: readonly string[]): Promise<(StoredVector | undefined)[]> {
    const got = await this.rows.getMany(userIds as string[]);
    return got.map((r) => (r && r.featureId === featureId ? { featureId, vector: bytesVector(Buffer.from(r.v)), updatedAtMs: updatedAtOf(Buffer.from(r.events)) } : undefined));
  }

  /** Every row (checks and tools). */
  *all(): Generator<SharedUserRow> {
    for (const { key, value } of this.rows.getRange()) yield fromLmdb(key, value);
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}

function fromLmdb(userId: string, r: LmdbRow): SharedUserRow {
  return { state: decodeEvents(userId, Buffer.from(r.events)), applied: new Map(r.applied), vector: bytesVector(Buffer.from(r.v)), version: r.version };
}
