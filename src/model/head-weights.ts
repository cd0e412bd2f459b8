// The realtime head's weights file (weights.bin): a magic, a variable count, then per variable its
// name, shape and float32 data, in the model's order. Decoding refuses anything truncated or padded.
import { UserError } from '../util/errors.js';

const WEIGHTS_MAGIC = 'AETNRTH1';

export function f32Bytes(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

export function encodeWeights(vars: readonly { name: string; data: Float32Array; shape: number[] }[]): Buffer {
  const parts: Buffer[] = [Buffer.from(WEIGHTS_MAGIC, 'ascii')];
  const count = Buffer.alloc(4);
  count.writeUInt32LE(vars.length);
  parts.push(count);
  for (const v of vars) {
    const name = Buffer.from(v.name, 'utf8');
    const head = Buffer.alloc(2 + name.length + 1 + 4 * v.shape.length);
    let o = head.writeUInt16LE(name.length, 0);
    o += name.copy(head, o);
    o = head.writeUInt8(v.shape.length, o);
    for (const s of v.shape) o = head.writeUInt32LE(s, o);
    parts.push(head, f32Bytes(v.data));
  }
  return Buffer.concat(parts);
}

export function decodeWeights(buf: Buffer, what: string): Map<string, { shape: number[]; data: Float32Array }> {
  const fail = (why: string) => new UserError(`realtime head checkpoint ${what}: ${why}`);
  if (buf.length < 12 || buf.toString('ascii', 0, 8) !== WEIGHTS_MAGIC) throw fail('not a realtime-head weights file (bad magic)');
  const n = buf.readUInt32LE(8);
  let o = 12;
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (let i = 0; i < n; i++) {
    if (o + 2 > buf.length) throw fail('truncated');
    const len = buf.readUInt16LE(o);
    o += 2;
    if (o + len + 1 > buf.length) throw fail('truncated');
    const name = buf.toString('utf8', o, o + len);
    o += len;
    const rank = buf.readUInt8(o);
    o += 1;
    if (o + 4 * rank > buf.length) throw fail('truncated');
    const shape: number[] = [];
    for (let r = 0; r < rank; r++, o += 4) shape.push(buf.readUInt32LE(o));
    const size = shape.reduce((a, b) => a * b, 1);
    if (o + 4 * size > buf.length) throw fail(`truncated in variable ${name}`);
    // Copy: the Buffer's offset need not be 4-byte aligned for a Float32Array view.
    const data = new Float32Array(size);
    Buffer.from(data.buffer).set(buf.subarray(o, o + 4 * size));
    o += 4 * size;
    out.set(name, { shape, data });
  }
  if (o !== buf.length) throw fail(`${buf.length - o} trailing bytes`);
  return out;
}
