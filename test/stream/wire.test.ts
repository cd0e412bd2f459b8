// The hot-path AppEvent reader against protobuf-es's generated decoder (the reference): identical
// fields on every message protobuf-es writes (with unknown fields, repeated fields, negative and
// huge numbers, non-ASCII text), and on damaged bytes the same verdict: accepted by both with the
// same fields, or refused by both.
import { describe, expect, it } from 'vitest';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AppEventSchema } from '../../src/gen/aetn/v1/events_pb.js';
import { readAppEvent, WireError } from '../../src/stream/wire.js';
import { mulberry32 } from '../../src/util/random.js';

const ALPHABET = ['a', 'Z', '0', '-', '.', 'é', '漢', '😀', '\u0000', '\ufeff'];
function randomText(r: () => number): string {
  const n = r() < 0.2 ? 0 : Math.floor(r() * 20);
  let s = '';
  for (let i = 0; i < n; i++) s += r() < 0.8 ? String.fromCharCode(97 + Math.floor(r() * 26)) : ALPHABET[Math.floor(r() * ALPHABET.length)]!;
  return s;
}

function varint(v: bigint): number[] {
  const out: number[] = [];
  let x = BigInt.asUintN(64, v);
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) b |= 0x80;
    out.push(b);
  } while (x > 0n);
  return out;
}

/** Unknown fields of every wire type, including a nested group. */
function unknownField(r: () => number): number[] {
  const no = 6 + Math.floor(r() * 1000);
  switch (Math.floor(r() * 5)) {
    case 0:
      return [...varint(BigInt(no << 3)), ...varint(BigInt(Math.floor(r() * 1e12)))];
    case 1:
      return [...varint(BigInt((no << 3) | 1)), 1, 2, 3, 4, 5, 6, 7, 8];
    case 2:
      return [...varint(BigInt((no << 3) | 2)), 3, 0xff, 0x00, 0x80];
    case 3:
      return [...varint(BigInt((no << 3) | 5)), 9, 9, 9, 9];
    default:
      return [...varint(BigInt((no << 3) | 3)), ...varint(BigInt(7 << 3)), 42, ...varint(BigInt((no << 3) | 4))];
  }
}

function fieldsOf(m: ReturnType<typeof fromBinary<typeof AppEventSchema>>) {
  return { eventId: m.eventId, userId: m.userId, packageName: m.packageName, type: m.type, timestampMs: m.timestampMs };
}

function ours(bytes: Uint8Array) {
  const m = readAppEvent(bytes);
  return { eventId: m.eventId, userId: m.userId, packageName: m.packageName, type: m.type, timestampMs: m.timestampExact() };
}

function randomMessage(r: () => number): Uint8Array {
  const ts = r() < 0.1 ? 0n : r() < 0.2 ? -BigInt(Math.floor(r() * 1e15)) : r() < 0.1 ? 2n ** 62n + BigInt(Math.floor(r() * 1000)) : BigInt(Math.floor(r() * 2e12));
  const type = r() < 0.1 ? -Math.floor(r() * 100) : Math.floor(r() * 4);
  const base = toBinary(AppEventSchema, create(AppEventSchema, { eventId: randomText(r), userId: randomText(r), packageName: randomText(r), type, timestampMs: ts }));
  const parts: number[] = [...base];
  // Unknown fields and repeated occurrences (the last one wins) at random places.
  const extra = Math.floor(r() * 4);
  for (let i = 0; i < extra; i++) {
    if (r() < 0.5) parts.push(...unknownField(r));
    else parts.unshift(...toBinary(AppEventSchema, create(AppEventSchema, { eventId: randomText(r), type: Math.floor(r() * 3), timestampMs: BigInt(Math.floor(r() * 1e9)) })));
  }
  return new Uint8Array(parts);
}

describe('readAppEvent', () => {
  it('reads every field exactly as protobuf-es does, over 5,000 random messages', () => {
    const r = mulberry32(11);
    for (let i = 0; i < 5000; i++) {
      const bytes = randomMessage(r);
      expect(ours(bytes), `message ${i}: ${Buffer.from(bytes).toString('hex')}`).toEqual(fieldsOf(fromBinary(AppEventSchema, bytes)));
    }
  });

  it('works on a view into a larger buffer (a Kafka fetch) as on its own copy', () => {
    const bytes = toBinary(AppEventSchema, create(AppEventSchema, { eventId: 'e', userId: 'u7', packageName: 'com.x', type: 1, timestampMs: 5n }));
    const big = Buffer.alloc(bytes.length + 20, 0xaa);
    big.set(bytes, 7);
    expect(ours(big.subarray(7, 7 + bytes.length))).toEqual(ours(bytes));
  });

  it('accepts and refuses exactly what protobuf-es does on damaged bytes (50,000 mutations)', () => {
    const r = mulberry32(99);
    let refusedByBoth = 0;
    let acceptedByBoth = 0;
    for (let i = 0; i < 50_000; i++) {
      const bytes = randomMessage(r);
      const flips = 1 + Math.floor(r() * 3);
      for (let f = 0; f < flips; f++) {
        const what = r();
        const at = Math.floor(r() * bytes.length);
        if (what < 0.6) bytes[at] = Math.floor(r() * 256);
        else if (what < 0.8) bytes[at] = bytes[at]! ^ 0x80;
        else bytes[at] = (bytes[at]! & 0xf8) | Math.floor(r() * 8); // another wire type
      }
      const cut = r() < 0.2 ? bytes.subarray(0, Math.floor(r() * bytes.length)) : bytes;
      let theirs: ReturnType<typeof fieldsOf> | undefined;
      try {
        theirs = fieldsOf(fromBinary(AppEventSchema, cut));
      } catch {
        theirs = undefined;
      }
      let mine: ReturnType<typeof ours> | undefined;
      try {
        mine = ours(cut);
      } catch (err) {
        expect(err).toBeInstanceOf(WireError);
        mine = undefined;
      }
      expect(mine, `verdicts differ: ${Buffer.from(cut).toString('hex')}`).toEqual(theirs);
      if (mine === undefined) refusedByBoth++;
      else acceptedByBoth++;
    }
    // The mutations must exercise both outcomes, or the test proves nothing.
    expect(refusedByBoth).toBeGreaterThan(1000);
    expect(acceptedByBoth).toBeGreaterThan(1000);
  });

  it('refuses invalid UTF-8, truncation and bad tags with a WireError', () => {
    const bad = [
      [0x0a, 0x02, 0xc3, 0x28], // event_id: invalid UTF-8
      [0x0a, 0x05, 0x61], // event_id: runs past the end
      [0x00], // field number 0
      [0x0f], // wire type 7
      [0x0c], // end-group tag without a group
      [0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // 11-byte varint
    ];
    for (const b of bad) {
      expect(() => readAppEvent(new Uint8Array(b)), Buffer.from(b).toString('hex')).toThrow(WireError);
      expect(() => fromBinary(AppEventSchema, new Uint8Array(b)), Buffer.from(b).toString('hex')).toThrow();
    }
    // A known field with another wire type is read as its declared type, as protobuf-es reads it.
    const odd = new Uint8Array([0x08, 0x01, 0x61]); // event_id with the varint wire type
    expect(ours(odd)).toEqual(fieldsOf(fromBinary(AppEventSchema, odd)));
    expect(ours(odd).eventId).toBe('a');
  });
});
