// Binary shard files of training examples. Layout (little-endian):
//   header (32 bytes): magic "AETNSHRD" | u32 version | u32 numUsers | u32 payloadLo | u32 payloadHi
//                      | u32 crc32(payload) | u32 reserved(0)
//   payload: numUsers records, each: u32 bytes-after-this-field | u16 idLen | id (UTF-8)
//            | f64 lastActiveMs | u32 nRet | u16 nIns | u16 nUn | i32[nRet] retention
//            | i32[nIns] installs | u8[nIns] install week buckets | f64[nIns] install times
//            | i32[nUn] uninstalls | u8[nUn] buckets | f64[nUn] times
// The checksum covers the whole payload and is verified before any record is handed out, so a
// truncated or corrupt shard can never feed half-valid examples into training.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { UserError } from '../util/errors.js';
import type { UserExample } from './types.js';

export const SHARD_MAGIC = 'AETNSHRD';
export const SHARD_VERSION = 1;
const HEADER = 32;

export function encodeExample(ex: UserExample): Buffer {
  const id = Buffer.from(ex.userId, 'utf8');
  if (id.length > 0xffff) throw new UserError(`user id too long (${id.length} bytes): ${ex.userId.slice(0, 40)}…`);
  const nR = ex.retention.length;
  const nI = ex.installs.length;
  const nU = ex.uninstalls.length;
  if (nI > 0xffff || nU > 0xffff) throw new Error('sequence too long for the shard format');
  const body = 2 + id.length + 8 + 4 + 2 + 2 + 4 * nR + 13 * nI + 13 * nU;
  const b = Buffer.allocUnsafe(4 + body);
  let o = 0;
  b.writeUInt32LE(body, o); o += 4;
  b.writeUInt16LE(id.length, o); o += 2;
  id.copy(b, o); o += id.length;
  b.writeDoubleLE(ex.lastActiveMs, o); o += 8;
  b.writeUInt32LE(nR, o); o += 4;
  b.writeUInt16LE(nI, o); o += 2;
  b.writeUInt16LE(nU, o); o += 2;
  for (let i = 0; i < nR; i++, o += 4) b.writeInt32LE(ex.retention[i], o);
  for (const [apps, dates, times, n] of [
    [ex.installs, ex.installDates, ex.installTimes, nI],
    [ex.uninstalls, ex.uninstallDates, ex.uninstallTimes, nU],
  ] as const) {
    for (let i = 0; i < n; i++, o += 4) b.writeInt32LE(apps[i], o);
    for (let i = 0; i < n; i++, o += 1) {
      const d = dates[i];
      if (d < 0 || d > 255) throw new Error(`date bucket out of range: ${d}`);
      b.writeUInt8(d, o);
    }
    for (let i = 0; i < n; i++, o += 8) b.writeDoubleLE(times[i], o);
  }
  return b;
}

/** Writes one shard atomically (temp file + rename). */
export class ShardWriter {
  private parts: Buffer[] = [];
  private bytes = 0;
  users = 0;

  constructor(readonly path: string) {}

  add(ex: UserExample): void {
    const b = encodeExample(ex);
    this.parts.push(b);
    this.bytes += b.length;
    this.users++;
  }

  close(): { users: number; bytes: number; crc32: number } {
    const payload = Buffer.concat(this.parts, this.bytes);
    this.parts = [];
    const crc = crc32(payload) >>> 0;
    const h = Buffer.alloc(HEADER);
    h.write(SHARD_MAGIC, 0, 'latin1');
    h.writeUInt32LE(SHARD_VERSION, 8);
    h.writeUInt32LE(this.users, 12);
    h.writeUInt32LE(payload.length % 2 ** 32, 16);
    h.writeUInt32LE(Math.floor(payload.length / 2 ** 32), 20);
    h.writeUInt32LE(crc, 24);
    const tmp = `${this.path}.tmp-${process.pid}`;
    writeFileSync(tmp, Buffer.concat([h, payload]));
    renameSync(tmp, this.path);
    return { users: this.users, bytes: HEADER + payload.length, crc32: crc };
  }
}

/** Reads and verifies a whole shard, then decodes its examples lazily. */
export function readShard(path: string): { users: number; examples: () => Generator<UserExample> } {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new UserError(`cannot read shard ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (buf.length < HEADER || buf.toString('latin1', 0, 8) !== SHARD_MAGIC)
    throw new UserError(`${path} is not an AETN shard (bad magic or shorter than the header)`);
  const version = buf.readUInt32LE(8);
  if (version !== SHARD_VERSION) throw new UserError(`${path}: shard format version ${version}, this build reads ${SHARD_VERSION}`);
  const users = buf.readUInt32LE(12);
  const payloadLen = buf.readUInt32LE(16) + buf.readUInt32LE(20) * 2 ** 32;
  if (buf.length !== HEADER + payloadLen)
    throw new UserError(`${path} is truncated or has trailing bytes: header says ${payloadLen} payload bytes, file has ${buf.length - HEADER}`);
  const payload = buf.subarray(HEADER);
  const crc = crc32(payload) >>> 0;
  if (crc !== buf.readUInt32LE(24)) throw new UserError(`${path} is corrupt: checksum mismatch (crc32 ${crc.toString(16)} != ${buf.readUInt32LE(24).toString(16)})`);
  return {
    users,
    *examples() {
      let o = 0;
      for (let u = 0; u < users; u++) {
        if (o + 4 > payload.length) throw new UserError(`${path} is corrupt: record ${u} starts past the end`);
        const len = payload.readUInt32LE(o);
        const end = o + 4 + len;
        if (end > payload.length) throw new UserError(`${path} is corrupt: record ${u} overruns the payload`);
        o += 4;
        const idLen = payload.readUInt16LE(o); o += 2;
        const userId = payload.toString('utf8', o, o + idLen); o += idLen;
        const lastActiveMs = payload.readDoubleLE(o); o += 8;
        const nR = payload.readUInt32LE(o); o += 4;
        const nI = payload.readUInt16LE(o); o += 2;
        const nU = payload.readUInt16LE(o); o += 2;
        if (o + 4 * nR + 13 * (nI + nU) !== end) throw new UserError(`${path} is corrupt: record ${u} has inconsistent lengths`);
        const retention = new Int32Array(nR);
        for (let i = 0; i < nR; i++, o += 4) retention[i] = payload.readInt32LE(o);
        const seq = (n: number): [Int32Array, Int32Array, Float64Array] => {
          const a = new Int32Array(n);
          const d = new Int32Array(n);
          const t = new Float64Array(n);
          for (let i = 0; i < n; i++, o += 4) a[i] = payload.readInt32LE(o);
          for (let i = 0; i < n; i++, o += 1) d[i] = payload[o];
          for (let i = 0; i < n; i++, o += 8) t[i] = payload.readDoubleLE(o);
          return [a, d, t];
        };
        const [installs, installDates, installTimes] = seq(nI);
        const [uninstalls, uninstallDates, uninstallTimes] = seq(nU);
        yield { userId, retention, installs, installDates, installTimes, uninstalls, uninstallDates, uninstallTimes, lastActiveMs };
      }
      if (o !== payload.length) throw new UserError(`${path} is corrupt: ${payload.length - o} bytes after the last record`);
    },
  };
}
