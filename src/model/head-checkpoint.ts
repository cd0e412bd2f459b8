// Realtime-head checkpoints and the inference API the Kafka pipeline calls (`loadHead`).
//
// A checkpoint is a directory:
//   manifest.json    feature id (rt-<yyyymmdd>-<8hex>), base AETN feature id, config, vocab hash,
//                    training settings and metrics, and the size + sha256 of every file below
//   weights.bin      the head's trainable variables (name, shape, float32 data, in the model's order)
//   app-matrix.bin   the frozen AETN app matrix W_a [M, dA] float32, copied in
//   vocab.json       the vocabulary (app index <-> package names) the head was trained on
//
// The frozen app matrix is COPIED IN rather than referenced by path: the realtime consumer then
// starts from this one directory (no AETN model to load, no path that can move or be retrained
// underneath it), and the copy is tied to its source by `baseFeatureId` + `baseAppMatrixSha256`, so
// a caller that knows which AETN feature it serves next to can insist on it (`expectBaseFeatureId`,
// `expectAppMatrixSha256`) and a mismatch is refused. Writes are atomic (temp dir + rename); any
// size or checksum mismatch refuses the checkpoint with a UserError naming the file.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Vocabulary } from '../data/types.js';
import { UserError } from '../util/errors.js';
import { child } from '../util/log.js';
import { HostHead } from './realtime-head-host.js';
import { RealtimeHead, encodeHeadBatch, narrowWidth, validateHeadConfig, type RealtimeHeadConfig, type RecentEvents } from './realtime-head.js';

const logger = child('head-checkpoint');
export const HEAD_FORMAT = 'aetn-realtime-head/1';
const WEIGHTS_MAGIC = 'AETNRTH1';

export interface HeadFileEntry {
  path: string;
  bytes: number;
  sha256: string;
}

export interface HeadManifest {
  format: typeof HEAD_FORMAT;
  featureId: string;
  variant: 'realtime';
  createdAtMs: number;
  /** The AETN feature whose tied app matrix W_a this head uses (frozen). */
  baseFeatureId: string;
  baseAppMatrixSha256: string;
  vocabHash: string;
  config: RealtimeHeadConfig;
  variables: { name: string; shape: number[] }[];
  training?: Record<string, unknown>;
  metrics?: Record<string, unknown>;
  backend?: string;
  files: { weights: HeadFileEntry; appMatrix: HeadFileEntry; vocab: HeadFileEntry };
}

export function newHeadFeatureId(now = new Date()): string {
  const ymd = now.toISOString().slice(0, 10).replace(/-/g, '');
  return `rt-${ymd}-${randomBytes(4).toString('hex')}`;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function f32Bytes(a: Float32Array): Buffer {
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

export interface SaveHeadOptions {
  baseFeatureId: string;
  vocab: Vocabulary;
  featureId?: string;
  training?: Record<string, unknown>;
  metrics?: Record<string, unknown>;
  backend?: string;
}

/** Writes `head` to `dir` atomically; returns the manifest. An existing head checkpoint is replaced. */
export async function saveHead(dir: string, head: RealtimeHead, opts: SaveHeadOptions): Promise<HeadManifest> {
  const out = resolve(dir);
  if (opts.vocab.apps.length !== head.cfg.numApps) {
    throw new UserError(`realtime head: vocabulary has ${opts.vocab.apps.length} apps but the head was built for ${head.cfg.numApps}`);
  }
  if (existsSync(out)) {
    const entries = await readdir(out);
    if (entries.length > 0 && !entries.includes('manifest.json')) {
      throw new UserError(`refusing to write the realtime head into ${out}: it is a non-empty directory that is not a head checkpoint`);
    }
  }
  const vars = head.namedVariables.map((p) => ({ name: p.name, shape: p.v.shape.slice(), data: p.v.dataSync() as Float32Array }));
  const weights = encodeWeights(vars);
  const appMatrix = f32Bytes(head.appMatrix.dataSync() as Float32Array);
  const vocab = Buffer.from(JSON.stringify(opts.vocab));
  const appSha = sha256(appMatrix);
  const manifest: HeadManifest = {
    format: HEAD_FORMAT,
    featureId: opts.featureId ?? newHeadFeatureId(),
    variant: 'realtime',
    createdAtMs: Date.now(),
    baseFeatureId: opts.baseFeatureId,
    baseAppMatrixSha256: appSha,
    vocabHash: opts.vocab.hash,
    config: head.cfg,
    variables: vars.map((v) => ({ name: v.name, shape: v.shape })),
    training: opts.training,
    metrics: opts.metrics,
    backend: opts.backend ?? tf.getBackend(),
    files: {
      weights: { path: 'weights.bin', bytes: weights.length, sha256: sha256(weights) },
      appMatrix: { path: 'app-matrix.bin', bytes: appMatrix.length, sha256: appSha },
      vocab: { path: 'vocab.json', bytes: vocab.length, sha256: sha256(vocab) },
    },
  };
  const tag = randomBytes(4).toString('hex');
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${tag}`);
  await mkdir(tmp, { recursive: true });
  try {
    await writeFile(join(tmp, 'weights.bin'), weights);
    await writeFile(join(tmp, 'app-matrix.bin'), appMatrix);
    await writeFile(join(tmp, 'vocab.json'), vocab);
    await writeFile(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    // Swap directories: readers see the old checkpoint or the new one, never a mix.
    if (existsSync(out)) {
      const old = join(dirname(out), `.${basename(out)}.old-${tag}`);
      await rename(out, old);
      await rename(tmp, out);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(tmp, out);
    }
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  logger.info({ featureId: manifest.featureId, baseFeatureId: manifest.baseFeatureId, dir: out }, 'realtime head saved');
  return manifest;
}

export interface HeadCheckFor {
  /** Refuse unless the head was trained on this AETN feature's app matrix. */
  expectBaseFeatureId?: string;
  /** Refuse unless the copied app matrix is byte-identical to this one (sha256 of float32 bytes). */
  expectAppMatrixSha256?: string;
  /** Refuse unless the head's vocabulary has this hash. */
  expectVocabHash?: string;
}

export interface HeadCheckpointData {
  manifest: HeadManifest;
  vocab: Vocabulary;
  appMatrix: Float32Array;
  weights: Map<string, { shape: number[]; data: Float32Array }>;
}

async function readChecked(dir: string, entry: HeadFileEntry | undefined, label: string): Promise<Buffer> {
  if (!entry || typeof entry.path !== 'string') throw new UserError(`realtime head checkpoint ${dir}: manifest lacks the ${label} entry`);
  const p = join(dir, entry.path);
  let buf: Buffer;
  try {
    buf = await readFile(p);
  } catch {
    throw new UserError(`realtime head checkpoint ${dir}: ${entry.path} is missing`);
  }
  if (buf.length !== entry.bytes) throw new UserError(`realtime head checkpoint ${dir}: ${entry.path} has ${buf.length} bytes, manifest says ${entry.bytes} (truncated or replaced)`);
  if (sha256(buf) !== entry.sha256) throw new UserError(`realtime head checkpoint ${dir}: ${entry.path} fails its sha256 check (corrupt)`);
  return buf;
}

/** Reads and verifies a head checkpoint (sizes, checksums, config, base feature, vocabulary). */
export async function readHeadCheckpoint(dir: string, check: HeadCheckFor = {}): Promise<HeadCheckpointData> {
  const root = resolve(dir);
  let manifest: HeadManifest;
  try {
    await stat(root);
  } catch {
    throw new UserError(`realtime head checkpoint ${root} does not exist`);
  }
  try {
    manifest = JSON.parse(await readFile(join(root, 'manifest.json'), 'utf8')) as HeadManifest;
  } catch (err) {
    throw new UserError(`realtime head checkpoint ${root}: manifest.json is missing or not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (manifest.format !== HEAD_FORMAT) throw new UserError(`${root} is not a realtime head checkpoint (format ${String(manifest.format)}, expected ${HEAD_FORMAT})`);
  validateHeadConfig(manifest.config);
  if (check.expectBaseFeatureId !== undefined && manifest.baseFeatureId !== check.expectBaseFeatureId) {
    throw new UserError(`realtime head ${manifest.featureId} was trained on AETN feature ${manifest.baseFeatureId}, not ${check.expectBaseFeatureId}: retrain it with 'aetn train --head realtime' against that model`);
  }
  if (check.expectVocabHash !== undefined && manifest.vocabHash !== check.expectVocabHash) {
    throw new UserError(`realtime head ${manifest.featureId} uses vocabulary ${manifest.vocabHash}, not ${check.expectVocabHash}`);
  }
  if (check.expectAppMatrixSha256 !== undefined && manifest.baseAppMatrixSha256 !== check.expectAppMatrixSha256) {
    throw new UserError(`realtime head ${manifest.featureId}: its app matrix differs from the given AETN model's (sha256 mismatch), although both claim feature ${manifest.baseFeatureId}`);
  }
  const [w, a, v] = await Promise.all([
    readChecked(root, manifest.files?.weights, 'weights'),
    readChecked(root, manifest.files?.appMatrix, 'app matrix'),
    readChecked(root, manifest.files?.vocab, 'vocab'),
  ]);
  if (manifest.files.appMatrix.sha256 !== manifest.baseAppMatrixSha256) throw new UserError(`realtime head checkpoint ${root}: app matrix checksum disagrees with baseAppMatrixSha256`);
  const cfg = manifest.config;
  if (a.length !== 4 * cfg.numApps * cfg.appDim) throw new UserError(`realtime head checkpoint ${root}: app matrix has ${a.length / 4} values, config says ${cfg.numApps} x ${cfg.appDim}`);
  const appMatrix = new Float32Array(cfg.numApps * cfg.appDim);
  Buffer.from(appMatrix.buffer).set(a);
  const vocab = JSON.parse(v.toString('utf8')) as Vocabulary;
  if (vocab.hash !== manifest.vocabHash || vocab.apps?.length !== cfg.numApps) throw new UserError(`realtime head checkpoint ${root}: vocab.json disagrees with the manifest`);
  const weights = decodeWeights(w, root);
  return { manifest, vocab, appMatrix, weights };
}

/** Rebuilds the RealtimeHead of a checkpoint on the current tfjs backend (bit-exact weights). */
export async function loadHeadModel(dir: string, check: HeadCheckFor = {}): Promise<{ head: RealtimeHead; manifest: HeadManifest; vocab: Vocabulary }> {
  const data = await readHeadCheckpoint(dir, check);
  const head = new RealtimeHead(data.manifest.config, data.appMatrix, 0);
  for (const p of head.namedVariables) {
    const saved = data.weights.get(p.name);
    if (!saved) throw new UserError(`realtime head checkpoint ${dir}: variable ${p.name} is missing`);
    if (saved.shape.join('x') !== p.v.shape.join('x')) throw new UserError(`realtime head checkpoint ${dir}: variable ${p.name} has shape ${saved.shape.join('x')}, the model needs ${p.v.shape.join('x')}`);
    p.v.assign(tf.tensor(saved.data, saved.shape));
  }
  if (data.weights.size !== head.namedVariables.length) throw new UserError(`realtime head checkpoint ${dir}: ${data.weights.size} variables stored, the model has ${head.namedVariables.length}`);
  return { head, manifest: data.manifest, vocab: data.vocab };
}

/** What the realtime pipeline holds: a loaded head plus the vocabulary mapping it needs. */
export interface LoadedHead {
  featureId: string;
  baseFeatureId: string;
  /** Width of the short-term vector. */
  dim: number;
  /** Events per user the head looks at (the pipeline keeps at least this many). */
  maxEvents: number;
  manifest: HeadManifest;
  /** Package name -> app index, for every package merged into a vocabulary app. */
  appIndexOfPackage: Map<string, number>;
  /** 'host' (the default): users with <= HOST_MAX_EVENTS events on realtime-head-host.ts, the rest on tfjs; 'tfjs' (AETN_HEAD_HOST=0): everyone on tfjs. */
  forward: 'host' | 'tfjs';
  /**
   * Short-term vectors of a batch of users at time `nowMs` (synchronous).
   * Events may come in any order; the newest `maxEvents` are used. Throws UserError on an app index
   * outside the vocabulary or an unknown type, so map packages with `appIndexOfPackage` first.
   */
  embed(states: readonly RecentEvents[], nowMs: number): Float32Array[];
  dispose(): void;
}

export interface LoadHeadOptions extends HeadCheckFor {
  /** tfjs backend: wasm (default), cpu, tensorflow. */
  backend?: string;
  /** Users per forward pass; larger batches are split to bound memory. Default 1024. */
  maxBatch?: number;
  /** 'host' (default; AETN_HEAD_HOST=0 switches it off) or 'tfjs': see headForwardKind. */
  forward?: 'host' | 'tfjs';
}

/**
 * Users with at most this many events take the host forward, the rest the tfjs one. Measured at
 * batch 1000 (d 64, 1 layer, wasm + OpenBLAS, 2 cores at load ~2.5): host/tfjs users/s was 1.94x
 * at 2 events, 1.15x at 4, 0.66x at 6, 0.61x at 8, 0.55x at 32; the host forward's LayerNorm,
 * softmax and ReLU are scalar JS, where the wasm kernels use SIMD, and that dominates once a user
 * has more than a handful of tokens.
 */
export const HOST_MAX_EVENTS = 4;

/**
 * The same cut when the host forward's GEMMs run as JS loops (no native addon): host/tfjs at
 * batch 1000, both without OpenBLAS, was 2.29x at 1 event, 1.10x at 2, 0.67x at 4, 0.32x at 8.
 */
export const HOST_MAX_EVENTS_JS = 2;

/** Users with at most this many events take the host forward, given how its GEMMs run. */
export function hostMaxEvents(gemm: 'native' | 'js'): number {
  return gemm === 'native' ? HOST_MAX_EVENTS : HOST_MAX_EVENTS_JS;
}

/**
 * Which forward loadHead's embed runs. 'host' (default): the tfjs-free HostHead (valid tokens only)
 * for users with <= hostMaxEvents(...) events (4 with the native GEMM, 2 without), 1.1-2.3x faster on
 * those; everyone else on tfjs. 'tfjs' (AETN_HEAD_HOST=0): RealtimeHead.forward
 * on the tfjs backend, users grouped by width; kept as the reference and for comparisons. Both
 * compute the same function (to ~1e-6; test/model/realtime-head-host.test.ts).
 */
export function headForwardKind(requested?: 'host' | 'tfjs'): 'host' | 'tfjs' {
  if (requested) return requested;
  const v = (process.env.AETN_HEAD_HOST ?? '').trim().toLowerCase();
  return v === '0' || v === 'off' || v === 'false' ? 'tfjs' : 'host';
}

export async function loadHead(modelDir: string, opts: LoadHeadOptions = {}): Promise<LoadedHead> {
  const { initBackend } = await import('./backend.js');
  await initBackend(opts.backend);
  const { head, manifest, vocab } = await loadHeadModel(modelDir, opts);
  head.freeze();
  const appIndexOfPackage = new Map<string, number>();
  for (const app of vocab.apps) for (const p of app.packages ?? []) appIndexOfPackage.set(p, app.index);
  const maxBatch = opts.maxBatch ?? 1024;
  const dim = head.cfg.outDim;
  const forward = headForwardKind(opts.forward);
  const host = forward === 'host' ? new HostHead(head, { maxBatch }) : null;
  const hostMax = host ? hostMaxEvents(host.gemmKind) : -1;
  // Users are grouped by how many events they have (widths 8, 16, 32, ...): a forward pass costs
  // per position, and most users in a Kafka batch have far fewer events than maxEvents.
  const embedGroup = (states: readonly RecentEvents[], rows: number[], width: number, nowMs: number, out: Float32Array[]) => {
    for (let i = 0; i < rows.length; i += maxBatch) {
      const part = rows.slice(i, i + maxBatch);
      const batch = encodeHeadBatch(part.map((r) => states[r]!), nowMs, head.cfg, width);
      const t = tf.tidy(() => head.forward(batch, false));
      const flat = t.dataSync() as Float32Array;
      t.dispose();
      part.forEach((r, j) => (out[r] = flat.slice(j * dim, (j + 1) * dim)));
    }
  };
  return {
    featureId: manifest.featureId,
    baseFeatureId: manifest.baseFeatureId,
    dim,
    maxEvents: head.cfg.maxEvents,
    manifest,
    appIndexOfPackage,
    forward,
    embed(states, nowMs) {
      const out: Float32Array[] = new Array(states.length);
      const groups = new Map<number, number[]>();
      const hostRows: number[] = [];
      states.forEach((st, r) => {
        // Which forward a user gets depends only on its own event count, so a user's vector
        // still does not depend on the rest of the batch.
        if (host && Math.min(st.events.length, head.cfg.maxEvents) <= hostMax) {
          hostRows.push(r);
          return;
        }
        const w = narrowWidth(st.events.length, head.cfg);
        let g = groups.get(w);
        if (!g) groups.set(w, (g = []));
        g.push(r);
      });
      if (hostRows.length > 0) {
        const vs = host!.embed(
          hostRows.map((r) => states[r]!),
          nowMs,
        );
        hostRows.forEach((r, j) => (out[r] = vs[j]!));
      }
      for (const [w, rows] of [...groups.entries()].sort((a, b) => a[0] - b[0])) embedGroup(states, rows, w, nowMs, out);
      return out;
    },
    dispose: () => head.dispose(),
  };
}

export interface AetnAppMatrix {
  /** W_a = W_app + C[category(app)], row-major [numApps, appDim]. */
  appMatrix: Float32Array;
  numApps: number;
  appDim: number;
  featureId: string;
  vocabHash: string;
  /** sha256 of the float32 bytes of appMatrix (what a head checkpoint records as baseAppMatrixSha256). */
  sha256: string;
}

function findVar(layout: { name: string; shape: number[]; offset: number; size: number }[], stable: string, dir: string) {
  const hit = layout.find((l) => l.name === stable || l.name.endsWith(`/${stable}`));
  if (!hit) throw new UserError(`AETN checkpoint ${dir} has no ${stable} variable: cannot build its tied app matrix`);
  return hit;
}

/**
 * The frozen app matrix of a trained AETN checkpoint, computed once on the host:
 * W_a[i] = W_app[i] + C[category(i)] (the same sum AetnModel.appMatrix() forms on every pass).
 */
export async function appMatrixFromAetnCheckpoint(modelDir: string, opts: { vocabHash?: string } = {}): Promise<AetnAppMatrix> {
  const { loadCheckpoint, configFromJson } = await import('./checkpoint.js');
  const { manifest, weights, layout } = await loadCheckpoint(modelDir, opts);
  const cfg = configFromJson<{ appCategory?: Int32Array; numApps?: number }>(manifest.config);
  const wApp = findVar(layout, 'W_app', modelDir);
  const c = findVar(layout, 'C', modelDir);
  const [M, d] = wApp.shape as [number, number];
  const cat = cfg.appCategory;
  if (!cat || cat.length !== M) throw new UserError(`AETN checkpoint ${modelDir}: config.appCategory has ${cat?.length ?? 0} entries for ${M} apps`);
  if (c.shape[1] !== d) throw new UserError(`AETN checkpoint ${modelDir}: C is ${c.shape.join('x')}, W_app is ${M}x${d}`);
  const numCat = c.shape[0]!;
  const out = new Float32Array(M * d);
  for (let i = 0; i < M; i++) {
    const k = cat[i]!;
    if (k < 0 || k >= numCat) throw new UserError(`AETN checkpoint ${modelDir}: app ${i} has category ${k} outside [0, ${numCat})`);
    const a = wApp.offset + i * d;
    const b = c.offset + k * d;
    for (let j = 0; j < d; j++) out[i * d + j] = weights[a + j]! + weights[b + j]!;
  }
  return { appMatrix: out, numApps: M, appDim: d, featureId: manifest.featureId, vocabHash: manifest.vocab.hash, sha256: sha256(f32Bytes(out)) };
}

// ---- the head on worker threads: both cores for inference ----

interface HeadWorkerData {
  aetnHeadWorker: true;
  dir: string;
  opts: Omit<LoadHeadOptions, 'workers'>;
  /** OpenBLAS threads (process-wide) while the pool runs; unset: leave the default. */
  blasThreads?: number;
}

export interface HeadPool {
  featureId: string;
  baseFeatureId: string;
  dim: number;
  maxEvents: number;
  manifest: HeadManifest;
  appIndexOfPackage: Map<string, number>;
  workers: number;
  /** Like LoadedHead.embed, with the users split across the worker threads. */
  embed(states: readonly RecentEvents[], nowMs: number): Promise<Float32Array[]>;
  close(): Promise<void>;
}

/**
 * Loads the head on `workers` threads (default 2): tfjs-wasm runs one thread per engine in Node,
 * so this is how the head gets both cores. Each worker verifies the checkpoint itself; results are
 * identical to loadHead's on the same backend (same kernels, same grouping per worker).
 */
export async function loadHeadPool(modelDir: string, opts: LoadHeadOptions & { workers?: number } = {}): Promise<HeadPool> {
  const { Worker } = await import('node:worker_threads');
  const { workers: n = 2, ...rest } = opts;
  if (!Number.isInteger(n) || n < 1) throw new UserError(`head workers must be a positive integer, got ${n}`);
  // The main thread reads the manifest and vocabulary for the package map; workers load weights.
  const data = await readHeadCheckpoint(modelDir, rest);
  const appIndexOfPackage = new Map<string, number>();
  for (const app of data.vocab.apps) for (const p of app.packages ?? []) appIndexOfPackage.set(p, app.index);
  const url = new URL(import.meta.url);
  // Several workers already fill the cores: OpenBLAS threads on top would only contend with them.
  const { availableParallelism } = await import('node:os');
  const wd: HeadWorkerData = { aetnHeadWorker: true, dir: resolve(modelDir), opts: rest, ...(n > 1 ? { blasThreads: Math.max(1, Math.floor(availableParallelism() / n)) } : {}) };
  type Reply = { id: number; vectors?: Float32Array[]; error?: string; userError?: boolean; ready?: boolean };
  const handles = Array.from({ length: n }, () => {
    const w = url.pathname.endsWith('.ts')
      ? new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`, { eval: true, workerData: wd })
      : new Worker(url, { workerData: wd });
    const pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
    let failure: Error | undefined;
    const fail = (e: Error) => {
      failure ??= e;
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    };
    const ready = new Promise<void>((res, rej) => {
      w.once('error', rej);
      w.on('message', (m: Reply) => {
        if (m.ready) return res();
        if (m.id === 0 && m.error) return rej(m.userError ? new UserError(m.error) : new Error(m.error));
        const p = pending.get(m.id);
        if (!p) return;
        pending.delete(m.id);
        p.resolve(m);
      });
    });
    w.on('error', (e) => fail(e));
    w.on('exit', (code) => fail(new Error(`realtime head worker exited with code ${code}`)));
    let next = 1;
    const call = (states: readonly RecentEvents[], nowMs: number): Promise<Float32Array[]> => {
      if (failure) return Promise.reject(failure);
      const id = next++;
      return new Promise<Reply>((resolveCall, reject) => {
        pending.set(id, { resolve: resolveCall, reject });
        // Only what the head reads crosses the thread boundary.
        w.postMessage({ id, nowMs, states: states.map((s) => ({ events: s.events.map((e) => ({ app: e.app, type: e.type, timestampMs: e.timestampMs })) })) });
      }).then((r) => {
        if (r.error) throw r.userError ? new UserError(r.error) : new Error(r.error);
        return r.vectors!;
      });
    };
    return { w, ready, call };
  });
  try {
    await Promise.all(handles.map((h) => h.ready));
  } catch (err) {
    await Promise.all(handles.map((h) => h.w.terminate()));
    throw err;
  }
  const m = data.manifest;
  return {
    featureId: m.featureId,
    baseFeatureId: m.baseFeatureId,
    dim: m.config.outDim,
    maxEvents: m.config.maxEvents,
    manifest: m,
    appIndexOfPackage,
    workers: n,
    async embed(states, nowMs) {
      // Small batches stay on one worker: a thread hop costs more than it saves.
      const parts = states.length < 64 ? 1 : n;
      const size = Math.ceil(states.length / parts);
      const chunks: Promise<Float32Array[]>[] = [];
      for (let i = 0; i < parts; i++) {
        const part = states.slice(i * size, (i + 1) * size);
        if (part.length > 0) chunks.push(handles[i]!.call(part, nowMs));
      }
      return (await Promise.all(chunks)).flat();
    },
    async close() {
      await Promise.all(handles.map((h) => h.w.terminate()));
      if (wd.blasThreads) {
        // The thread count is process-wide: give the next user of OpenBLAS the default back.
        const ng = await import('./native-gemm.js');
        if (ng.loadNativeGemm().ok) ng.resetNativeGemmThreads();
      }
    },
  };
}

async function runHeadWorker(data: HeadWorkerData): Promise<void> {
  const { parentPort } = await import('node:worker_threads');
  if (!parentPort) return;
  const port = parentPort;
  let head: LoadedHead;
  try {
    head = await loadHead(data.dir, data.opts);
    if (data.blasThreads) {
      const { setNativeGemmThreads } = await import('./native-gemm.js');
      setNativeGemmThreads(data.blasThreads);
    }
  } catch (err) {
    port.postMessage({ id: 0, error: (err as Error).message, userError: err instanceof UserError });
    return;
  }
  port.on('message', (msg: { id: number; nowMs: number; states: RecentEvents[] }) => {
    try {
      const vectors = head.embed(msg.states, msg.nowMs);
      port.postMessage({ id: msg.id, vectors }, vectors.map((v) => v.buffer as ArrayBuffer));
    } catch (err) {
      port.postMessage({ id: msg.id, error: (err as Error).message, userError: err instanceof UserError });
    }
  });
  port.postMessage({ ready: true });
}

{
  const { isMainThread, workerData } = await import('node:worker_threads');
  if (!isMainThread && (workerData as Partial<HeadWorkerData> | undefined)?.aetnHeadWorker) await runHeadWorker(workerData as HeadWorkerData);
}
