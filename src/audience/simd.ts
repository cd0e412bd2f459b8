// Batched dot products (X · Wᵀ) in a tiny WebAssembly SIMD kernel. The look-alike's heavy loops
// (scoring ~14k candidates against 21 weight rows, k-means assignments) are this one operation;
// plain JS manages ~1 multiply-add per ns here, f32x4 SIMD several times that, and it needs no
// native dependency or build step: the module is assembled below from its opcodes (about 150
// bytes). Falls back to JS where WebAssembly SIMD is unavailable or d is not a multiple of 4.
//
// The function, in WAT:
//   (func (export "gemm") (param $x i32) (param $n i32) (param $w i32) (param $R i32)
//                         (param $d4 i32) (param $out i32)
//     ;; out[r*R + j] = sum_i x[r*d + i] * w[j*d + i]; $d4 = 4*d bytes, a multiple of 16
//     for r < n: for j < R: acc = f32x4(0); for i < d4 step 16: acc += load(x+i) * load(w+i);
//                out[...] = acc.lane0 + acc.lane1 + acc.lane2 + acc.lane3)
import { child } from '../util/log.js';
import { dot } from './linalg.js';

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function section(id: number, body: number[]): number[] {
  return [id, ...leb(body.length), ...body];
}

export function assemble(): Uint8Array {
  // locals: 0 x, 1 n, 2 w, 3 R, 4 d4, 5 out | 6 r, 7 j, 8 i, 9 xp, 10 wp (i32), 11 acc (v128)
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const i32 = (v: number) => [0x41, ...leb(v)];
  const simd = (op: number) => [0xfd, ...leb(op)];
  const ADD = 0x6a;
  const GE_U = 0x4f;
  const body = [
    2, 5, 0x7f, 1, 0x7b, // locals: 5 x i32, 1 x v128
    ...get(0), ...set(9), // xp = x
    ...i32(0), ...set(6), // r = 0
    0x02, 0x40, 0x03, 0x40, // block loop (rows)
    ...get(6), ...get(1), GE_U, 0x0d, 1, // r >= n -> exit
    ...i32(0), ...set(7), ...get(2), ...set(10), // j = 0; wp = w
    0x02, 0x40, 0x03, 0x40, // block loop (weight rows)
    ...get(7), ...get(3), GE_U, 0x0d, 1, // j >= R -> exit
    ...simd(12), ...new Array(16).fill(0), ...set(11), // acc = 0
    ...i32(0), ...set(8), // i = 0
    0x02, 0x40, 0x03, 0x40, // block loop (elements)
    ...get(8), ...get(4), GE_U, 0x0d, 1, // i >= d4 -> exit
    ...get(11),
    ...get(9), ...get(8), ADD, ...simd(0), 2, 0, // v128.load x[i]
    ...get(10), ...get(8), ADD, ...simd(0), 2, 0, // v128.load w[i]
    ...simd(230), // f32x4.mul
    ...simd(228), // f32x4.add
    ...set(11),
    ...get(8), ...i32(16), ADD, ...set(8),
    0x0c, 0, 0x0b, 0x0b, // br loop; end loop; end block
    ...get(5), // address
    ...get(11), ...simd(31), 0, ...get(11), ...simd(31), 1, 0x92, ...get(11), ...simd(31), 2, 0x92, ...get(11), ...simd(31), 3, 0x92,
    0x38, 2, 0, // f32.store
    ...get(5), ...i32(4), ADD, ...set(5),
    ...get(10), ...get(4), ADD, ...set(10),
    ...get(7), ...i32(1), ADD, ...set(7),
    0x0c, 0, 0x0b, 0x0b,
    ...get(9), ...get(4), ADD, ...set(9),
    ...get(6), ...i32(1), ADD, ...set(6),
    0x0c, 0, 0x0b, 0x0b,
    0x0b, // end func
  ];
  const name = (s: string) => [...leb(s.length), ...Buffer.from(s, 'ascii')];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 6, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0]),
    ...section(3, [1, 0]),
    ...section(5, [1, 0x00, 1]),
    ...section(7, [2, ...name('gemm'), 0x00, 0, ...name('mem'), 0x02, 0]),
    ...section(10, [1, ...leb(body.length), ...body]),
  ]);
}

// The compiler's lib has no WebAssembly typings (no DOM lib); the little used here, typed here.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}

interface Kernel {
  mem: WasmMemory;
  gemm: (x: number, n: number, w: number, R: number, d4: number, out: number) => void;
}

let kernel: Kernel | null | undefined;

function load(): Kernel | null {
  if (kernel !== undefined) return kernel;
  try {
    const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
    const inst = new wasm.Instance(new wasm.Module(assemble()));
    const e = inst.exports as unknown as { mem: WasmMemory; gemm: Kernel['gemm'] };
    kernel = { mem: e.mem, gemm: e.gemm };
  } catch (err) {
    // No WebAssembly SIMD here: the JS loop below does the same work, several times slower.
    child('simd').warn({ err: (err as Error).message }, 'WebAssembly SIMD kernel unavailable: look-alike dot products fall back to plain JS (slower)');
    kernel = null;
  }
  return kernel;
}

/** True when the SIMD kernel is in use (for logs and benchmarks). */
export function simdAvailable(): boolean {
  return load() !== null;
}

/**
 * out[r*R + j] = x[r] · w[j] for n rows of x (n x d, row-major) and R rows of w (R x d).
 * Single-threaded and synchronous; the kernel's memory is reused (grown as needed) across calls.
 */
export function gemmRows(x: Float32Array, n: number, w: Float32Array, R: number, d: number, out: Float32Array): void {
  const k = d % 4 === 0 ? load() : null;
  if (!k) {
    for (let r = 0; r < n; r++) for (let j = 0; j < R; j++) out[r * R + j] = dot(x, r * d, w, j * d, d);
    return;
  }
  const xBytes = n * d * 4;
  const wBytes = R * d * 4;
  const need = xBytes + wBytes + n * R * 4;
  const have = k.mem.buffer.byteLength;
  if (need > have) k.mem.grow(Math.ceil((need - have) / 65536));
  const f = new Float32Array(k.mem.buffer);
  f.set(x.subarray(0, n * d), 0);
  f.set(w.subarray(0, R * d), xBytes / 4);
  k.gemm(0, n, xBytes, R, d * 4, xBytes + wBytes);
  out.set(f.subarray((xBytes + wBytes) / 4, (xBytes + wBytes) / 4 + n * R));
}
