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
import { decodeWeights, encodeWeights, f32Bytes } from './head-weights.js';
import { RealtimeHead, validateHeadConfig, type RealtimeHeadConfig } from './realtime-head.js';

const logger = child('head-checkpoint');
export const HEAD_FORMAT = 'aetn-realtime-head/1';

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
