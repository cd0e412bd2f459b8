// Not a benchmark (bench/run.js skips '_' files): where one paper-size training chunk's time goes on
// this thread (M = 2000): weight load, flat Adam, gradient and embedding times, then tf.profile's
// kernel time by kernel, the 25 slowest kernel calls, and Identity/Multiply/Sum/Add by input shape.
//   npx tsx bench/_step-profile.ts [users = 8] [OpenBLAS threads = 1]
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/model/backend.js';
import { setNativeGemmThreads } from '../src/model/native-gemm.js';
import { FlatAdam } from '../src/model/train-adam.js';
import { LocalEngine } from '../src/model/train-engine.js';
import { factory } from '../src/model/train-model.js';
import { PAPER, users, vocabulary } from './_aetn-users.js';

const B = Number(process.argv[2] ?? 8);
const threads = Number(process.argv[3] ?? 1);
await initBackend('wasm');
setNativeGemmThreads(threads);
const cfg = factory.makeConfig(vocabulary(2000), PAPER, { seqLen: 25, dateBuckets: 52 });
const e = LocalEngine.create(factory, cfg, 1);
const w = e.getWeights();
const g = new Float32Array(w.length);
const adam = new FlatAdam(w.length);
const t = (label: string, f: () => void, n = 3) => {
  f();
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    f();
    xs.push(performance.now() - s);
  }
  xs.sort((a, b) => a - b);
  console.log(`${label.padEnd(40)} ${xs[0]!.toFixed(1)} ms (median ${xs[xs.length >> 1]!.toFixed(1)})`);
};
const ex = users(B, 2000, 5);
t('setWeightsSync', () => e.setWeightsSync(w));
t('adam.apply', () => adam.apply(w, g, 1e-4));
t(`gradientSync B${B}`, () => e.gradientSync(ex, 1, g));
t(`embedSync B${B}`, () => e.embedSync(ex));
const info = await tf.profile(() => {
  e.gradientSync(ex, 2, g);
});
const by = new Map<string, { calls: number; ms: number; bytes: number }>();
for (const k of info.kernels) {
  const x = by.get(k.name) ?? { calls: 0, ms: 0, bytes: 0 };
  x.calls++;
  x.ms += Number(k.kernelTimeMs) || 0;
  x.bytes += k.totalBytesSnapshot ?? 0;
  by.set(k.name, x);
}
const rows = [...by.entries()].sort((a, b) => b[1].ms - a[1].ms);
let tot = 0;
for (const [k, v] of rows) tot += v.ms;
for (const [k, v] of rows.slice(0, 25)) console.log(`  ${k.padEnd(20)} ${String(v.calls).padStart(5)} ${v.ms.toFixed(1).padStart(8)} ms`);
console.log(`  kernels total ${tot.toFixed(0)} ms; peak ${(info.peakBytes / 2 ** 20).toFixed(0)} MiB`);
// Biggest single kernels
const big = [...info.kernels].sort((a, b) => (Number(b.kernelTimeMs) || 0) - (Number(a.kernelTimeMs) || 0)).slice(0, 25);
for (const k of big) console.log(`  ${k.name.padEnd(16)} ${(Number(k.kernelTimeMs) || 0).toFixed(1).padStart(7)} ms  in ${JSON.stringify(k.inputShapes)} out ${JSON.stringify(k.outputShapes)}`);
const idn = new Map<string, { n: number; ms: number }>();
for (const k of info.kernels) if (k.name === 'Identity' || k.name === 'Multiply' || k.name === 'Sum' || k.name === 'Add') { const key = k.name + ' ' + JSON.stringify(k.inputShapes); const x = idn.get(key) ?? { n: 0, ms: 0 }; x.n++; x.ms += Number(k.kernelTimeMs) || 0; idn.set(key, x); }
for (const [k, v] of [...idn.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 30)) console.log(`  ${k.padEnd(60)} ${v.n} ${v.ms.toFixed(1)} ms`);
await e.close();
