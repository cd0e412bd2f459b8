// Our engine against TensorFlow 2 on CPU (the speed anchor), side by side in one run.
//   npx tsx bench/tf-anchor.ts [--quick] [--rounds N] [--rows train16,train128,embed128,embed1000]
//       [--ours w2,w1t2] [--xla embed128,embed1000|none] [--apps M] [--reps-train16 N] [--reps-train128 N]
//       [--reps-embed128 N] [--reps-embed1000 N] [--memory-budget MiB] [--chunk-users N]
// Prints a table and writes bench/results/tf-anchor.json.
//
// Baseline: bench/anchors/aetn_tf.py, the same AETN in TensorFlow (same sizes, same FLOPs per user,
// the same 9,416,528 parameters at M = 2000; tf.function graph mode, and XLA where cheap), 2
// intra-op threads. It runs as a long-lived Python process (--serve): built and traced once, then
// asked for one measurement at a time, so the rows alternate ours / TF within each round and both see
// about the same load from the machine's other users. The load average is recorded beside every
// measurement. The Python side lives only here: tensorflow-cpu is pip-installed into
// .cache/tf-anchor-venv on first use (git-ignored); nothing in src/ needs Python.
//
// Workloads (paper size: d 512, FFN 1024, 8 heads, 2+1 layers, 128-d u, I = 25, M apps; users with
// full sequences and 50 retained apps, both sides):
//   trainB - one Adam step of B users: ours = engine.gradient + FlatAdam + weight sync; TF = batch
//            build + forward + backward + Adam + loss fetch (inside one tf.function)
//   embedB - user vectors of B users (no heads, no dropout); both include the batch build
// Our configurations (--ours): wN = N engines in worker threads with one OpenBLAS thread each (w2 is
// what `aetn train` runs on 2 cores); w1tK = one engine on this thread with K OpenBLAS threads (w1t2
// is what `aetn embed` runs when the native GEMM is built: src/model/infer.ts). The table marks the
// product's default for each row with '*'. Each measurement is one warm-up call and then `reps` timed calls (median); TF
// does two warm-up calls (aetn_tf.py's timeit). Ratios are ours / TF graph: per round (the same
// round's neighbours), then the median over rounds.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../src/model/backend.js';
import { loadNativeGemm, setNativeGemmThreads } from '../src/model/native-gemm.js';
import { startEngine } from '../src/model/train.js';
import { FlatAdam } from '../src/model/train-adam.js';
import { defaultFactoryUrl, type Engine, type LocalEngine } from '../src/model/train-engine.js';
import { factory } from '../src/model/train-model.js';
import { PAPER, users, vocabulary } from './_aetn-users.js';

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, '..');
const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const num = (name: string, def: number): number => (opt(name) === undefined ? def : Number(opt(name)));
const list = (name: string, def: string): string[] => (opt(name) ?? def).split(',').filter((x) => x && x !== 'none');
const quick = args.includes('--quick');
const M = num('--apps', 2000);
const ROUNDS = num('--rounds', quick ? 1 : 3);
const ROWS = list('--rows', 'train16,train128,embed128,embed1000');
const OURS = list('--ours', 'w2,w1t2');
const XLA = new Set(list('--xla', 'embed128,embed1000'));
const REPS: Record<string, number> = {
  train16: num('--reps-train16', quick ? 2 : 6),
  train128: num('--reps-train128', quick ? 1 : 3),
  embed128: num('--reps-embed128', quick ? 2 : 5),
  embed1000: num('--reps-embed1000', quick ? 1 : 2),
};
const MEMORY_BUDGET = opt('--memory-budget') === undefined ? undefined : Number(opt('--memory-budget'));
const CHUNK = opt('--chunk-users') === undefined ? undefined : Number(opt('--chunk-users'));
const TF_SPEC = process.env.AETN_BENCH_TF ?? 'tensorflow-cpu==2.21.0';
const VENV = join(ROOT, '.cache', 'tf-anchor-venv');
const PY = join(VENV, 'bin', 'python');
const ANCHOR = join(here, 'anchors', 'aetn_tf.py');

for (const r of ROWS) if (!/^(train|embed)\d+$/.test(r)) throw new Error(`--rows: '${r}' is not trainN or embedN`);

// ---- the TensorFlow side ----------------------------------------------------------------------

/** The venv's python when it imports tensorflow, after creating the venv and pip-installing if needed; else why not. */
function ensureTf(): { ok: true } | { ok: false; why: string } {
  const imports = () => existsSync(PY) && spawnSync(PY, ['-c', 'import tensorflow, numpy'], { stdio: 'ignore', env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' } }).status === 0;
  if (imports()) return { ok: true };
  console.log(`TensorFlow anchor: installing ${TF_SPEC} into ${VENV} (once; a few minutes) ...`);
  if (!existsSync(PY)) {
    const v = spawnSync('python3', ['-m', 'venv', VENV], { encoding: 'utf8' });
    if (v.status !== 0) {
      return { ok: false, why: `'python3 -m venv ${VENV}' failed (${(v.stderr || v.error?.message || '').trim().split('\n').pop()}). The anchor needs Python 3.10-3.13 with the venv module (Debian/Ubuntu: apt-get install python3-venv).` };
    }
  }
  const pip = spawnSync(PY, ['-m', 'pip', 'install', '--disable-pip-version-check', '--quiet', TF_SPEC, 'numpy'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (pip.status !== 0 || !imports()) {
    const tail = `${pip.stdout ?? ''}${pip.stderr ?? ''}`.trim().split('\n').slice(-4).join(' | ');
    return {
      ok: false,
      why:
        `pip could not install ${TF_SPEC} into ${VENV} (${tail || 'installed, but tensorflow does not import'}). ` +
        'Check that PyPI is reachable (or a proxy / PIP_INDEX_URL is set), that this Python (3.10-3.13) and CPU (x86-64 with AVX, or aarch64) ' +
        'have a tensorflow-cpu wheel, and that there are ~2 GB free; AETN_BENCH_TF=<pip spec> picks another version. Delete the venv to retry from scratch.',
    };
  }
  return { ok: true };
}

interface TfRow {
  ok: boolean;
  error?: string;
  users_per_s: number;
  best_users_per_s: number;
  median_s: number;
  cores: number;
  load_start: number;
  load: number;
}

class TfAnchor {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;
  private stderr = '';
  info: Record<string, unknown> = {};

  constructor() {
    this.proc = spawn(PY, [ANCHOR, '--serve', '--apps', String(M), '--threads', '2'], { env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' } });
    this.proc.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    this.lines = createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
  }

  private async next(): Promise<Record<string, unknown>> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`the TensorFlow anchor exited: ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    return JSON.parse(r.value) as Record<string, unknown>;
  }

  async ready(): Promise<void> {
    this.info = await this.next();
  }

  async measure(mode: 'graph' | 'xla', workload: string, reps: number): Promise<TfRow> {
    this.proc.stdin.write(`${JSON.stringify({ mode, workload, reps })}\n`);
    const r = (await this.next()) as unknown as TfRow;
    if (!r.ok) throw new Error(`TensorFlow anchor, ${mode} ${workload}: ${r.error}`);
    return r;
  }

  close(): void {
    this.proc.stdin.end();
    this.proc.kill();
  }
}

// ---- our side ---------------------------------------------------------------------------------

interface Ours {
  name: string;
  workers: number;
  blasThreads: number;
  engine: Engine;
  local: LocalEngine;
  weights: Float32Array;
  adam: FlatAdam;
  grad: Float32Array;
}

function parseConfig(name: string): { workers: number; blasThreads: number } {
  const m = /^w(\d+)(?:t(\d+))?$/.exec(name);
  if (!m) throw new Error(`--ours: '${name}' is not wN or w1tK`);
  const workers = Number(m[1]);
  const blasThreads = m[2] ? Number(m[2]) : 1;
  if (workers > 1 && blasThreads !== 1) throw new Error(`--ours: '${name}': worker pools run one OpenBLAS thread per worker`);
  return { workers, blasThreads };
}

async function startOurs(name: string): Promise<Ours> {
  const { workers, blasThreads } = parseConfig(name);
  const cfg = factory.makeConfig(vocabulary(M), PAPER, { seqLen: 25, dateBuckets: 52 });
  const memory = CHUNK !== undefined ? { chunkUsers: CHUNK } : { memoryBudgetMiB: MEMORY_BUDGET };
  const { engine, local } = await startEngine({ factoryUrl: defaultFactoryUrl(), cfg, seed: 1, backend: 'wasm', workers, memory });
  const weights = local.getWeights();
  await engine.setWeights(weights);
  return { name, workers, blasThreads, engine, local, weights, adam: new FlatAdam(weights.length), grad: new Float32Array(weights.length) };
}

interface OurRow {
  users_per_s: number;
  best_users_per_s: number;
  median_s: number;
  cores: number;
  load_start: number;
  load: number;
  chunk_users: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const k = s.length >> 1;
  return s.length % 2 ? s[k]! : (s[k - 1]! + s[k]!) / 2;
};

let dataSeed = 100;
async function measureOurs(o: Ours, workload: string, reps: number): Promise<OurRow> {
  // OpenBLAS's thread count is process-wide: set for the configuration measured now.
  setNativeGemmThreads(o.blasThreads);
  const n = Number(workload.replace(/^\D+/, ''));
  const training = workload.startsWith('train');
  const call = async (ex: ReturnType<typeof users>, seed: number) => {
    if (training) {
      await o.engine.gradient(ex, seed, o.grad);
      o.adam.apply(o.weights, o.grad, 1e-4);
      await o.engine.setWeights(o.weights);
    } else {
      await o.engine.embed(ex);
    }
  };
  await call(users(n, M, dataSeed++), 0); // warm-up
  const data = Array.from({ length: reps }, () => users(n, M, dataSeed++));
  const load0 = loadavg()[0];
  const walls: number[] = [];
  const c0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    await call(data[i]!, i + 1);
    walls.push((performance.now() - t) / 1000);
  }
  const c = process.cpuUsage(c0);
  const total = walls.reduce((a, b) => a + b, 0);
  const med = median(walls);
  return {
    users_per_s: n / med,
    best_users_per_s: n / Math.min(...walls),
    median_s: med,
    cores: (c.user + c.system) / 1e6 / total,
    load_start: load0,
    load: loadavg()[0],
    chunk_users: training ? o.engine.chunkUsers.training : o.engine.chunkUsers.inference,
  };
}

// ---- the run ----------------------------------------------------------------------------------

interface Measurement {
  round: number;
  workload: string;
  system: string; // 'ours w2', 'tf graph', ...
  usersPerSec: number;
  bestUsersPerSec: number;
  medianSeconds: number;
  cores: number;
  loadStart: number;
  loadEnd: number;
  chunkUsers?: number;
}

async function main(): Promise<void> {
  const started = performance.now();
  const machine = { cpus: cpus().length, model: cpus()[0]?.model ?? '?', loadavgAtStart: loadavg()[0] };
  console.log(`machine: ${machine.cpus} x ${machine.model}, load average ${machine.loadavgAtStart.toFixed(2)}`);
  process.env.AETN_NATIVE_GEMM ??= '1';
  const backend = await initBackend('wasm');
  const gemm = loadNativeGemm();
  console.log(`ours: ${backend.detail}`);
  if (!gemm.ok) console.log(`(the native GEMM is not built: ours runs the stock wasm kernels; npm run build:native)`);

  const tfState = ensureTf();
  let tf: TfAnchor | undefined;
  if (tfState.ok) {
    tf = new TfAnchor();
    await tf.ready();
    console.log(`TensorFlow anchor: ${JSON.stringify(tf.info)}`);
  } else {
    console.log(`TensorFlow anchor UNAVAILABLE, only our rows are measured: ${tfState.why}`);
  }

  const ours: Ours[] = [];
  for (const name of OURS) ours.push(await startOurs(name));
  const rows: Measurement[] = [];
  const log = (m: Measurement) => {
    rows.push(m);
    console.log(
      `  round ${m.round} ${m.workload.padEnd(9)} ${m.system.padEnd(10)} ${m.usersPerSec.toFixed(1).padStart(7)} users/s (best ${m.bestUsersPerSec.toFixed(1)})` +
        `  cores ${m.cores.toFixed(2)}  load ${m.loadStart.toFixed(2)} -> ${m.loadEnd.toFixed(2)}${m.chunkUsers !== undefined ? `  chunk ${Number.isFinite(m.chunkUsers) ? m.chunkUsers : 'all'}` : ''}`,
    );
  };
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const w of ROWS) {
        const reps = REPS[w] ?? 2;
        // Alternate the order each round so neither side always runs first.
        const order: Array<() => Promise<void>> = [];
        for (const o of ours) {
          order.push(async () => {
            const r = await measureOurs(o, w, reps);
            log({ round, workload: w, system: `ours ${o.name}`, usersPerSec: r.users_per_s, bestUsersPerSec: r.best_users_per_s, medianSeconds: r.median_s, cores: r.cores, loadStart: r.load_start, loadEnd: r.load, chunkUsers: r.chunk_users });
          });
        }
        if (tf) {
          const modes: Array<'graph' | 'xla'> = XLA.has(w) ? ['graph', 'xla'] : ['graph'];
          for (const mode of modes) {
            order.push(async () => {
              const r = await tf!.measure(mode, w, reps);
              log({ round, workload: w, system: `tf ${mode}`, usersPerSec: r.users_per_s, bestUsersPerSec: r.best_users_per_s, medianSeconds: r.median_s, cores: r.cores, loadStart: r.load_start, loadEnd: r.load });
            });
          }
        }
        if (round % 2 === 0) order.reverse();
        for (const f of order) await f();
      }
    }
  } finally {
    tf?.close();
    for (const o of ours) {
      await o.engine.close();
      if (o.engine !== o.local) await o.local.close();
    }
  }

  // Summary: per workload and system, the median over rounds; ratios to TF graph paired by round.
  const systems = [...new Set(rows.map((r) => r.system))];
  const summary: Array<Record<string, unknown>> = [];
  console.log(`\nusers/s, median over ${ROUNDS} round(s) [min-max]; ours / TF graph paired per round, median [min-max]; load = 1-min load average during the measurements (ours included); * = what aetn train / aetn embed run by default`);
  console.log(`${'workload'.padEnd(10)} ${'system'.padEnd(10)} ${'users/s'.padStart(8)} ${'range'.padStart(15)} ${'cores'.padStart(5)} ${'load'.padStart(9)}  ${'/ TF graph'.padStart(10)} ${'range'.padStart(11)}  ${'/ TF XLA'.padStart(8)}  ${'per CPU-s / TF graph'.padStart(20)}`);
  for (const w of ROWS) {
    const tfg = rows.filter((r) => r.workload === w && r.system === 'tf graph');
    const tfx = rows.filter((r) => r.workload === w && r.system === 'tf xla');
    for (const s of systems) {
      const mine = rows.filter((r) => r.workload === w && r.system === s);
      if (mine.length === 0) continue;
      const ups = mine.map((r) => r.usersPerSec);
      const loads = mine.flatMap((r) => [r.loadStart, r.loadEnd]);
      const paired = (base: Measurement[]) => mine.map((r) => r.usersPerSec / (base.find((b) => b.round === r.round)?.usersPerSec ?? NaN)).filter(Number.isFinite);
      const vsGraph = s === 'tf graph' ? [] : paired(tfg);
      // Users per CPU-second (users/s over the cores the process got): less sensitive to how the
      // neighbours share the cores than wall-clock users/s, but blind to how well each side uses 2.
      const perCpu = (r: Measurement) => r.usersPerSec / Math.max(1e-9, r.cores);
      const vsGraphCpu = s === 'tf graph' ? [] : mine.map((r) => perCpu(r) / perCpu(tfg.find((b) => b.round === r.round) ?? { ...r, usersPerSec: NaN })).filter(Number.isFinite);
      const vsXla = s.startsWith('tf') ? [] : paired(tfx);
      const isDefault = s === `ours ${w.startsWith('train') ? 'w2' : gemm.ok ? 'w1t2' : 'w2'}`;
      const row = {
        workload: w,
        system: s,
        isDefault,
        usersPerSecMedian: median(ups),
        usersPerSecMin: Math.min(...ups),
        usersPerSecMax: Math.max(...ups),
        coresMedian: median(mine.map((r) => r.cores)),
        loadMin: Math.min(...loads),
        loadMax: Math.max(...loads),
        ratioToTfGraph: vsGraph.length ? median(vsGraph) : null,
        ratioToTfGraphMin: vsGraph.length ? Math.min(...vsGraph) : null,
        ratioToTfGraphMax: vsGraph.length ? Math.max(...vsGraph) : null,
        ratioToTfXla: vsXla.length ? median(vsXla) : null,
        usersPerCpuSecondMedian: median(mine.map(perCpu)),
        perCpuSecondRatioToTfGraph: vsGraphCpu.length ? median(vsGraphCpu) : null,
      };
      summary.push(row);
      const f = (x: number | null, d = 2) => (x === null ? '' : x.toFixed(d));
      console.log(
        `${w.padEnd(10)} ${(s + (isDefault ? '*' : '')).padEnd(10)} ${row.usersPerSecMedian.toFixed(1).padStart(8)} ${`[${row.usersPerSecMin.toFixed(1)}-${row.usersPerSecMax.toFixed(1)}]`.padStart(15)} ${row.coresMedian.toFixed(2).padStart(5)} ${`${row.loadMin.toFixed(1)}-${row.loadMax.toFixed(1)}`.padStart(9)}  ` +
          `${f(row.ratioToTfGraph).padStart(10)} ${(row.ratioToTfGraph === null ? '' : `[${f(row.ratioToTfGraphMin)}-${f(row.ratioToTfGraphMax)}]`).padStart(11)}  ${f(row.ratioToTfXla).padStart(8)}  ${f(row.perCpuSecondRatioToTfGraph).padStart(20)}`,
      );
    }
  }
  const result = {
    when: new Date().toISOString(),
    machine: { ...machine, loadavgAtEnd: loadavg()[0] },
    settings: { apps: M, rounds: ROUNDS, rows: ROWS, ours: OURS, xla: [...XLA], reps: REPS, memoryBudgetMiB: MEMORY_BUDGET ?? null, chunkUsers: CHUNK ?? null, paper: PAPER, seqLen: 25, retention: 50 },
    ours: { backend: backend.detail, nativeGemm: gemm.ok ? gemm.addon.config() : null },
    tf: tf ? tf.info : { unavailable: tfState.ok ? null : tfState.why },
    summary,
    measurements: rows,
    seconds: (performance.now() - started) / 1000,
  };
  const out = join(here, 'results');
  mkdirSync(out, { recursive: true });
  const file = opt('--out') ?? 'tf-anchor.json';
  writeFileSync(join(out, file), `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote bench/results/${file} (${result.seconds.toFixed(0)} s)`);
  if (!tf) process.exitCode = 1;
}

await main();
