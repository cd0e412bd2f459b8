// The embedding benchmark of bench/gpu-embed.sh: the same users through the same checkpoint on
// webgpu and on the CPU (wasm) path, users/s and GFLOP/s for each and their ratio, plus what the
// WebGPU adapter request answered. Runs from the compiled dist/ (in the bundle gpu-embed.sh packs,
// with the bundled node and no npm); each backend in its own child process, so neither inherits the
// other's tfjs state. Not a benchmark on its own (bench/run.js skips files starting with '_').
//
//   node dist/bench/_gpu-embed.js [--size paper|small|tiny] [--users N] [--apps M] [--backends webgpu,wasm] [--out FILE]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend, probeWebgpu, type WebgpuProbe } from '../src/model/backend.js';
import { configToJson, newFeatureId, saveCheckpoint } from '../src/model/checkpoint.js';
import { createEmbedder } from '../src/model/infer.js';
import { LocalEngine } from '../src/model/train-engine.js';
import { factory } from '../src/model/train-model.js';
import { PAPER, users, vocabulary } from './_aetn-users.js';

const SIZES: Record<string, Record<string, number>> = {
  paper: PAPER,
  small: { dModel: 64, dFf: 128, heads: 4, encLayers: 2, decLayers: 1, dEmb: 32 },
  tiny: { dModel: 16, dFf: 32, heads: 2, encLayers: 1, decLayers: 1, dEmb: 8 },
};
/** Users compared between the backends (vectors written by each child). */
const CHECK_USERS = 32;

interface Args {
  size: string;
  users: number;
  apps: number;
  backends: string[];
  out: string | null;
}

function parseArgs(argv: string[]): Args & { child?: string; model?: string; vecOut?: string } {
  const a: Args & { child?: string; model?: string; vecOut?: string } = { size: 'paper', users: 4000, apps: 2000, backends: ['webgpu', 'wasm'], out: null };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) fail(`${k} needs a value`);
      return x;
    };
    const int = (): number => {
      const s = v();
      const n = Number(s);
      if (!Number.isInteger(n) || n < 1) fail(`${k} must be a positive integer (got ${s})`);
      return n;
    };
    if (k === '--size') a.size = v();
    else if (k === '--users') a.users = int();
    else if (k === '--apps') a.apps = int();
    else if (k === '--backends') a.backends = v().split(',').map((s) => s.trim()).filter(Boolean);
    else if (k === '--out') a.out = v();
    else if (k === '--child') a.child = v();
    else if (k === '--model') a.model = v();
    else if (k === '--vectors') a.vecOut = v();
    else if (k === '--help' || k === '-h') {
      process.stdout.write('usage: _gpu-embed.js [--size paper|small|tiny] [--users N (4000)] [--apps M (2000)] [--backends webgpu,wasm] [--out results.json]\n');
      process.exit(0);
    } else fail(`unknown argument '${k}' (see --help)`);
  }
  if (!SIZES[a.size]) fail(`--size must be one of ${Object.keys(SIZES).join(', ')} (got ${a.size})`);
  for (const b of a.backends) if (!['webgpu', 'wasm', 'cpu'].includes(b)) fail(`--backends: unknown backend '${b}' (webgpu, wasm, cpu)`);
  return a;
}

function fail(msg: string): never {
  process.stderr.write(`gpu-embed: ${msg}\n`);
  process.exit(2);
}

/** Child: write a seeded, untrained checkpoint (throughput does not depend on trained weights). */
async function makeModel(dir: string, a: Args): Promise<void> {
  await initBackend('wasm');
  const vocab = vocabulary(a.apps);
  const cfg = factory.makeConfig(vocab, SIZES[a.size]!, { seqLen: 25, dateBuckets: 52 });
  const engine = LocalEngine.create(factory, cfg, 1);
  const now = new Date().toISOString();
  await saveCheckpoint(
    dir,
    {
      featureId: newFeatureId('aetn'),
      modelKind: 'aetn',
      variant: 'aetn',
      config: configToJson(cfg),
      dim: factory.embeddingDim(cfg),
      vocab: { hash: vocab.hash, numApps: vocab.apps.length, numCategories: vocab.categories.length },
      backend: 'wasm',
      workers: 1,
      seed: 1,
      createdAt: now,
      updatedAt: now,
      metrics: {},
      training: { note: 'untrained, for the embedding benchmark' },
    },
    engine.layout,
    engine.getWeights(),
  );
  await engine.close();
}

interface Measured {
  backend: string;
  detail: string;
  workers: number;
  chunkUsers: number | null;
  batchUsers: number;
  users: number;
  seconds: number;
  usersPerSecond: number;
  gflopsPerSecond: number;
  cpuCoresBusy: number;
}

/** Child: the embedding throughput of one backend, after a warm-up call of one device chunk. */
async function measure(backend: string, model: string, vecOut: string, a: Args): Promise<Measured> {
  const e = await createEmbedder(model, { backend });
  try {
    const warm = Math.min(a.users, Number.isFinite(e.chunkUsers) ? e.chunkUsers : 64, 256);
    await e.embed(users(warm, a.apps, 3));
    const data = users(a.users, a.apps, 5);
    const c0 = process.cpuUsage();
    const t = performance.now();
    const first: Float32Array[] = [];
    for (let i = 0; i < data.length; i += e.batchUsers) {
      const v = await e.embed(data.slice(i, i + e.batchUsers));
      if (first.length < CHECK_USERS) first.push(...v.slice(0, CHECK_USERS - first.length));
    }
    const seconds = (performance.now() - t) / 1000;
    const c = process.cpuUsage(c0);
    const flat = new Float32Array(first.length * e.dim);
    first.forEach((v, i) => flat.set(v, i * e.dim));
    writeFileSync(vecOut, Buffer.from(flat.buffer));
    const ups = a.users / seconds;
    return {
      backend,
      detail: e.backend.detail,
      workers: e.workers,
      chunkUsers: Number.isFinite(e.chunkUsers) ? e.chunkUsers : null,
      batchUsers: e.batchUsers,
      users: a.users,
      seconds,
      usersPerSecond: ups,
      gflopsPerSecond: (ups * e.flopsPerUser) / 1e9,
      cpuCoresBusy: (c.user + c.system) / 1e6 / seconds,
    };
  } finally {
    await e.close();
  }
}

/** Runs this file as a child with the same node; its last stdout line is its JSON answer. */
function child(args: string[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    // Warnings and errors only (no JSON info lines between the results), unless the caller says otherwise.
    const env = { ...process.env, AETN_LOG_LEVEL: process.env.AETN_LOG_LEVEL ?? 'warn' };
    const p = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // Dawn's two start-up warnings are harmless; anything else is shown.
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => {
      const noise = /^Warning: maxDynamic\w+ artificially reduced/;
      const rest = err.split('\n').filter((l) => l && !noise.test(l)).join('\n');
      if (code !== 0) return reject(new Error(`${args.slice(0, 2).join(' ')} exited with ${code}:\n${rest || out}`));
      if (rest) process.stderr.write(`${rest}\n`);
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? ''));
      } catch {
        reject(new Error(`${args.slice(0, 2).join(' ')} printed no result:\n${out}${rest}`));
      }
    });
  });
}

function fmtLoad(l: number[]): string {
  return l.map((x) => x.toFixed(2)).join(' ');
}

function describeProbe(p: WebgpuProbe): string[] {
  if (p.ok && p.adapter) {
    const x = p.adapter;
    return [
      `WebGPU adapter: ${x.description || '(no description)'}`,
      `  vendor ${x.vendor || '?'}, architecture ${x.architecture || '?'}, device ${x.device || '?'}`,
      `  maxStorageBufferBindingSize ${(x.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB, maxBufferSize ${(x.maxBufferSize / 2 ** 20).toFixed(0)} MiB`,
    ];
  }
  return [
    `WebGPU adapter request answered: ${p.answer ?? '(the request was never made)'}`,
    `  ${p.detail}`,
    '  (the Vulkan driver of this host is likely missing or not usable by Dawn: check that the GPU driver ships its Vulkan ICD, e.g. nvidia_icd.json under /usr/share/vulkan/icd.d)',
  ];
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  if (a.child === 'make-model') {
    await makeModel(a.model!, a);
    process.stdout.write('{"ok":true}\n');
    return;
  }
  if (a.child === 'measure') {
    process.stdout.write(`${JSON.stringify(await measure(a.backends[0]!, a.model!, a.vecOut!, a))}\n`);
    return;
  }

  const probe = await probeWebgpu();
  const loadBefore = loadavg();
  const lines = [`node ${process.version} at ${process.execPath}; ${cpus().length} CPU cores (${cpus()[0]?.model ?? '?'}), load average ${fmtLoad(loadBefore)}`, ...describeProbe(probe)];
  for (const l of lines) process.stdout.write(`${l}\n`);
  const work = mkdtempSync(join(tmpdir(), 'aetn-gpu-embed-'));
  try {
    const model = join(work, 'model');
    const common = ['--size', a.size, '--users', String(a.users), '--apps', String(a.apps)];
    process.stdout.write(`model: AETN ${a.size} (${Object.entries(SIZES[a.size]!).map(([k, v]) => `${k} ${v}`).join(', ')}), ${a.apps} apps, seeded and untrained; ${a.users} synthetic users\n`);
    await child(['--child', 'make-model', '--model', model, ...common]);
    const results: Array<Measured | { backend: string; error: string }> = [];
    const vecs = new Map<string, Float32Array>();
    for (const b of a.backends) {
      if (b === 'webgpu' && !probe.ok) {
        results.push({ backend: b, error: `no adapter: ${probe.answer}` });
        process.stdout.write(`webgpu: not run (the adapter request answered ${probe.answer})\n`);
        continue;
      }
      const vf = join(work, `${b}.f32`);
      const r = (await child(['--child', 'measure', '--backends', b, '--model', model, '--vectors', vf, ...common])) as Measured;
      results.push(r);
      const buf = readFileSync(vf);
      vecs.set(b, new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)));
      process.stdout.write(
        `${b.padEnd(7)} ${r.usersPerSecond.toFixed(1).padStart(9)} users/s ${r.gflopsPerSecond.toFixed(2).padStart(8)} GFLOP/s  ${r.seconds.toFixed(1)} s, ` +
          `${r.workers} engine(s), ${r.chunkUsers ?? 'whole'} users per model call, batches of ${r.batchUsers}, ${r.cpuCoresBusy.toFixed(1)} CPU cores busy; ${r.detail}\n`,
      );
    }
    const ok = results.filter((r): r is Measured => 'usersPerSecond' in r);
    const gpu = ok.find((r) => r.backend === 'webgpu');
    const cpu = ok.find((r) => r.backend !== 'webgpu');
    let ratio: number | null = null;
    let maxDiff: number | null = null;
    if (gpu && cpu) {
      ratio = gpu.usersPerSecond / cpu.usersPerSecond;
      const g = vecs.get(gpu.backend)!;
      const c = vecs.get(cpu.backend)!;
      maxDiff = 0;
      for (let i = 0; i < Math.min(g.length, c.length); i++) maxDiff = Math.max(maxDiff, Math.abs(g[i]! - c[i]!));
      process.stdout.write(`webgpu / ${cpu.backend}: ${ratio.toFixed(2)}x users/s; vectors of the first ${CHECK_USERS} users agree to max |diff| ${maxDiff.toExponential(2)}\n`);
    }
    const loadAfter = loadavg();
    process.stdout.write(`load average at the end ${fmtLoad(loadAfter)}\n`);
    const report = { when: new Date().toISOString(), node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? null, load: { before: loadBefore, after: loadAfter }, size: a.size, apps: a.apps, users: a.users, probe, results, webgpuOverCpu: ratio, maxAbsDiff: maxDiff };
    if (a.out) {
      writeFileSync(a.out, `${JSON.stringify(report, null, 2)}\n`);
      process.stdout.write(`results: ${a.out}\n`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`gpu-embed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
