// Offline training of the realtime head (`aetn train --head realtime`): PTUM's next-K behaviour task.
//
// Each training sample cuts one user's install/uninstall timeline at a random point in time `now`
// (just before one of their installs, within `horizonMs` of it). The events before the cut are the
// input, the next K installs at or after the cut (within the horizon) are the targets. With
// probability `maskProb` the events of a random window [now - w, now), w ~ U(0, maskWindowMs), are
// dropped too (TransAct's random time-window masking): at serving time the most recent events may
// not have reached the state yet, and the head should not depend on the last few minutes alone.
// Loss: softmax cross-entropy of each target over the tied app matrix (full softmax over M, or
// sampled: the batch's targets + uniform negatives), averaged over a user's targets and the batch.
// Adam; the tfjs backend decides where it runs; deterministic for a seed on one backend.
//
// Quality: recall@10 of the next installs on validation users (5% by user-id hash) next to a
// popularity baseline (the 10 apps most installed by training users), so a run shows whether it learns.
import * as tf from '@tensorflow/tfjs-core';
import type { UserExample, Vocabulary } from '../data/types.js';
import { Sfc32 } from '../util/random.js';
import { userHash } from '../data/hash.js';
import { UserError } from '../util/errors.js';
import { child } from '../util/log.js';
import { Progress } from '../util/progress.js';
import { RealtimeHead, defaultHeadConfig, emptyHeadBatch, fillHeadRow, narrowWidth, type HeadBatch, type HeadEvent, type RealtimeHeadConfig } from './realtime-head.js';

const logger = child('train-head');

export interface HeadTrainOptions {
  /** K: next installs predicted per sample. */
  nextK: number;
  /** Targets must fall within this time after the cut. */
  horizonMs: number;
  /** Training samples cut from each user per epoch. */
  cutsPerUser: number;
  maskProb: number;
  maskWindowMs: number;
  epochs: number;
  batchSize: number;
  lr: number;
  seed: number;
  /** Percent of users (by user-id hash) held out for validation. */
  valPercent: number;
  /** 0 = full softmax over all apps; n > 0 = sampled softmax with n uniform negatives per batch. */
  negatives: number;
  shuffleBuffer: number;
  maxUsers?: number;
  maxValSamples: number;
  /** Progress bar on stderr (off under vitest by the Progress class itself). */
  progress: boolean;
}

export const DEFAULT_HEAD_TRAIN: HeadTrainOptions = {
  nextK: 5,
  horizonMs: 7 * 24 * 3600_000,
  cutsPerUser: 2,
  maskProb: 0.5,
  maskWindowMs: 30 * 60_000,
  epochs: 3,
  batchSize: 256,
  lr: 2e-3,
  seed: 1,
  valPercent: 5,
  negatives: 0,
  shuffleBuffer: 8192,
  maxValSamples: 5000,
  progress: true,
};

export interface HeadSample {
  events: HeadEvent[];
  nowMs: number;
  targets: number[];
}

interface TimedEvent extends HeadEvent {}

/** A user's installs and uninstalls merged into one timeline, oldest first. */
export function timelineOf(ex: UserExample): TimedEvent[] {
  const out: TimedEvent[] = [];
  for (let i = 0; i < ex.installs.length; i++) out.push({ app: ex.installs[i]!, type: 1, timestampMs: ex.installTimes[i]! });
  for (let i = 0; i < ex.uninstalls.length; i++) out.push({ app: ex.uninstalls[i]!, type: 2, timestampMs: ex.uninstallTimes[i]! });
  // Stable sort keeps an install before an uninstall logged at the same millisecond.
  return out.sort((a, b) => a.timestampMs - b.timestampMs);
}

/**
 * Cuts one sample from a timeline, or null when the user has no install with history before it.
 * `mask` false turns the time-window masking off (validation: serving delay is ~1 s).
 */
export function cutSample(tl: readonly TimedEvent[], rng: Sfc32, opts: Pick<HeadTrainOptions, 'nextK' | 'horizonMs' | 'maskProb' | 'maskWindowMs'>, maxEvents: number, mask: boolean): HeadSample | null {
  const cuts: number[] = [];
  for (let j = 1; j < tl.length; j++) if (tl[j]!.type === 1) cuts.push(j);
  if (cuts.length === 0) return null;
  const j = cuts[Math.floor(rng.next() * cuts.length)]!;
  const tj = tl[j]!.timestampMs;
  const gap = Math.min(tj - tl[j - 1]!.timestampMs, opts.horizonMs);
  const nowMs = tj - rng.next() * gap;
  const window = mask && rng.next() < opts.maskProb ? rng.next() * opts.maskWindowMs : 0;
  const events: HeadEvent[] = [];
  for (let i = 0; i < j; i++) {
    const e = tl[i]!;
    if (e.timestampMs < nowMs - window) events.push(e);
  }
  if (events.length === 0) return null;
  const targets: number[] = [];
  for (let i = j; i < tl.length && targets.length < opts.nextK; i++) {
    const e = tl[i]!;
    if (e.timestampMs - nowMs > opts.horizonMs) break;
    if (e.type === 1 && e.timestampMs >= nowMs) targets.push(e.app);
  }
  if (targets.length === 0) return null;
  return { events: events.length > maxEvents ? events.slice(events.length - maxEvents) : events, nowMs, targets };
}

function encodeSamples(samples: readonly HeadSample[], cfg: RealtimeHeadConfig): HeadBatch {
  // As narrow as the longest sample allows: padding changes nothing but costs time.
  let longest = 0;
  for (const s of samples) longest = Math.max(longest, s.events.length);
  const b = emptyHeadBatch(samples.length, narrowWidth(longest, cfg));
  for (let i = 0; i < samples.length; i++) fillHeadRow(b, i, samples[i]!.events, samples[i]!.nowMs, cfg);
  return b;
}

/** Candidate apps of a batch and each user's target weights over them ([B, C], rows sum to 1). */
function candidatesFor(samples: readonly HeadSample[], numApps: number, negatives: number, rng: Sfc32): { cands: Int32Array | null; weights: Float32Array; C: number } {
  let cands: Int32Array | null = null;
  let pos: Map<number, number> | null = null;
  let C = numApps;
  if (negatives > 0 && negatives < numApps) {
    const set = new Set<number>();
    for (const s of samples) for (const t of s.targets) set.add(t);
    // Uniform negatives: every app has the same sampling probability, so no log-Q correction is
    // needed (it would shift all logits by the same constant).
    let guard = 0;
    const want = set.size + negatives;
    while (set.size < Math.min(want, numApps) && guard++ < want * 20) set.add(Math.floor(rng.next() * numApps));
    cands = Int32Array.from([...set].sort((a, b) => a - b));
    pos = new Map();
    cands.forEach((a, i) => pos!.set(a, i));
    C = cands.length;
  }
  const weights = new Float32Array(samples.length * C);
  samples.forEach((s, i) => {
    const w = 1 / s.targets.length;
    for (const t of s.targets) weights[i * C + (pos ? pos.get(t)! : t)] += w;
  });
  return { cands, weights, C };
}

/** Mean over the batch of the targets' softmax cross-entropy. Call inside tf.variableGrads / tidy. */
export function headLoss(head: RealtimeHead, batch: HeadBatch, targetWeights: tf.Tensor2D, cands: tf.Tensor1D | undefined, training: boolean, seed: number): tf.Scalar {
  const s = head.forward(batch, training, seed); // [B, dOut]
  const { items, bias } = head.itemSide(cands); // [C, dOut], [C]
  const logits = tf.add(tf.matMul(s, items, false, true), bias); // [B, C]
  return tf.neg(tf.div(tf.sum(tf.mul(tf.logSoftmax(logits), targetWeights)), batch.size)) as tf.Scalar;
}

export interface HeadEpochStats {
  epoch: number;
  trainLoss: number;
  valLoss: number;
  recallAt10: number;
  popularityRecallAt10: number;
  samples: number;
  samplesPerSec: number;
  seconds: number;
}

export interface HeadTrainResult {
  head: RealtimeHead;
  history: HeadEpochStats[];
  /** initialLoss: the first batch's loss before any update (about log M for an untrained head). */
  metrics: { recallAt10: number; popularityRecallAt10: number; valLoss: number; initialLoss: number; valSamples: number; trainSamplesPerEpoch: number };
}

export interface ExampleSource {
  examples(): AsyncIterable<UserExample>;
}

function isValidation(userId: string, valPercent: number): boolean {
  return userHash(userId) % 100 < valPercent;
}

/** Recall@10 of the head and of the popularity list on `samples` (inference mode). */
export function evaluateHead(head: RealtimeHead, samples: readonly HeadSample[], popular: readonly number[], batchSize = 256): { recallAt10: number; popularityRecallAt10: number; valLoss: number } {
  if (samples.length === 0) return { recallAt10: NaN, popularityRecallAt10: NaN, valLoss: NaN };
  let rec = 0;
  let pop = 0;
  let loss = 0;
  const popSet = new Set(popular.slice(0, 10));
  const k = Math.min(10, head.cfg.numApps);
  for (let i = 0; i < samples.length; i += batchSize) {
    const part = samples.slice(i, i + batchSize);
    const batch = encodeSamples(part, head.cfg);
    const { weights, C } = candidatesFor(part, head.cfg.numApps, 0, new Sfc32(0));
    const [top, l] = tf.tidy(() => {
      const s = head.forward(batch, false);
      const { items, bias } = head.itemSide();
      const logits = tf.add(tf.matMul(s, items, false, true), bias);
      const w = tf.tensor2d(weights, [part.length, C]);
      const lossT = tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), w)));
      return [tf.topk(logits, k).indices, lossT];
    });
    const idx = top.dataSync();
    loss += l.dataSync()[0]!;
    top.dispose();
    l.dispose();
    part.forEach((s, r) => {
      const t = new Set(s.targets);
      let hit = 0;
      let phit = 0;
      for (let q = 0; q < k; q++) if (t.has(idx[r * k + q]!)) hit++;
      for (const a of t) if (popSet.has(a)) phit++;
      rec += hit / t.size;
      pop += phit / t.size;
    });
  }
  return { recallAt10: rec / samples.length, popularityRecallAt10: pop / samples.length, valLoss: loss / samples.length };
}

/**
 * Trains a head on `source`'s users. `appMatrix` is the frozen AETN W_a ([numApps * appDim]).
 * Streams users each epoch through a shuffle buffer; only validation samples stay in memory.
 */
export async function trainHead(source: ExampleSource, appMatrix: Float32Array, cfg: RealtimeHeadConfig, partial: Partial<HeadTrainOptions> = {}, onEpoch?: (s: HeadEpochStats) => void): Promise<HeadTrainResult> {
  const o: HeadTrainOptions = { ...DEFAULT_HEAD_TRAIN, ...partial };
  if (!(o.nextK >= 1 && o.epochs >= 1 && o.batchSize >= 1 && o.lr > 0)) throw new UserError('realtime head training: nextK, epochs, batchSize must be >= 1 and lr > 0');
  const head = new RealtimeHead(cfg, appMatrix, o.seed);
  const optimizer = tf.train.adam(o.lr);
  const history: HeadEpochStats[] = [];
  const valSamples: HeadSample[] = [];
  // One counting pass over the training users before any step: install counts give the popularity
  // baseline and initialise the output bias to log-popularity, so the head starts as the baseline
  // and spends its steps on what the recent events add (the bias alone would need hundreds of steps).
  const installCounts = new Float64Array(cfg.numApps);
  {
    let users = 0;
    for await (const ex of source.examples()) {
      if (o.maxUsers !== undefined && users >= o.maxUsers) break;
      users++;
      if (isValidation(ex.userId, o.valPercent)) continue;
      for (const a of ex.installs) if (a >= 0 && a < cfg.numApps) installCounts[a]! += 1;
    }
    let total = 0;
    for (const c of installCounts) total += c;
    const logPrior = Float32Array.from(installCounts, (c) => Math.log((c + 1) / (total + cfg.numApps)));
    const b = head.namedVariables.find((p) => p.name === 'item/b')!.v;
    b.assign(tf.tensor1d(logPrior));
  }
  const popular = topIndices(installCounts, 10);
  let step = 0;
  let trainSamplesPerEpoch = 0;
  let initialLoss = NaN;

  const runBatch = (samples: HeadSample[], rng: Sfc32): number => {
    const batch = encodeSamples(samples, cfg);
    const { cands, weights, C } = candidatesFor(samples, cfg.numApps, o.negatives, rng);
    const seed = (o.seed * 1_000_003 + step++) >>> 0;
    const loss = tf.tidy(() => {
      const w = tf.tensor2d(weights, [samples.length, C]);
      const c = cands ? tf.tensor1d(cands, 'int32') : undefined;
      const { value, grads } = tf.variableGrads(() => headLoss(head, batch, w, c, true, seed), head.variables);
      optimizer.applyGradients(grads as Parameters<typeof optimizer.applyGradients>[0]);
      return value;
    });
    const v = loss.dataSync()[0]!;
    loss.dispose();
    if (step === 1) initialLoss = v;
    return v;
  };

  for (let epoch = 1; epoch <= o.epochs; epoch++) {
    const t0 = performance.now();
    const shuffleRng = new Sfc32(o.seed, 'shuffle', epoch);
    const negRng = new Sfc32(o.seed, 'negatives', epoch);
    const buffer: HeadSample[] = [];
    const pending: HeadSample[] = [];
    let lossSum = 0;
    let lossN = 0;
    let samples = 0;
    let users = 0;
    const bar = new Progress({ label: `head epoch ${epoch}/${o.epochs}`, unit: 'samples', total: trainSamplesPerEpoch || undefined, silent: o.progress ? undefined : true });
    const flush = (force: boolean) => {
      while (pending.length >= o.batchSize || (force && pending.length > 0)) {
        const part = pending.splice(0, o.batchSize);
        const l = runBatch(part, negRng);
        if (!Number.isFinite(l)) throw new Error(`realtime head training diverged at epoch ${epoch} (loss ${l}): lower --lr`);
        lossSum += l * part.length;
        lossN += part.length;
        bar.tick(part.length, `loss ${(lossSum / lossN).toFixed(4)}`);
      }
    };
    for await (const ex of source.examples()) {
      if (o.maxUsers !== undefined && users >= o.maxUsers) break;
      users++;
      const tl = timelineOf(ex);
      if (isValidation(ex.userId, o.valPercent)) {
        if (epoch === 1 && valSamples.length < o.maxValSamples) {
          const s = cutSample(tl, new Sfc32(o.seed, 'val', ex.userId), o, cfg.maxEvents, false);
          if (s) valSamples.push(s);
        }
        continue;
      }
      const rng = new Sfc32(o.seed, 'cut', epoch, ex.userId);
      for (let c = 0; c < o.cutsPerUser; c++) {
        const s = cutSample(tl, rng, o, cfg.maxEvents, true);
        if (!s) continue;
        samples++;
        // Reservoir-style shuffle buffer: a full buffer emits a random element for each new one.
        if (buffer.length < o.shuffleBuffer) buffer.push(s);
        else {
          const r = Math.floor(shuffleRng.next() * buffer.length);
          pending.push(buffer[r]!);
          buffer[r] = s;
        }
      }
      flush(false);
      // Let timers (progress, signals) run between users on long epochs.
      if (users % 512 === 0) await new Promise((r) => setImmediate(r));
    }
    for (let i = buffer.length - 1; i > 0; i--) {
      const r = Math.floor(shuffleRng.next() * (i + 1));
      [buffer[i], buffer[r]] = [buffer[r]!, buffer[i]!];
    }
    pending.push(...buffer);
    flush(true);
    if (samples === 0) throw new UserError('realtime head training: no training samples (users need an install with at least one earlier event)');
    trainSamplesPerEpoch = samples;
    const ev = evaluateHead(head, valSamples, popular);
    const seconds = (performance.now() - t0) / 1000;
    const stats: HeadEpochStats = {
      epoch,
      trainLoss: lossSum / lossN,
      valLoss: ev.valLoss,
      recallAt10: ev.recallAt10,
      popularityRecallAt10: ev.popularityRecallAt10,
      samples,
      samplesPerSec: samples / seconds,
      seconds,
    };
    bar.finish(`loss ${stats.trainLoss.toFixed(4)} val ${stats.valLoss.toFixed(4)} recall@10 ${stats.recallAt10.toFixed(3)} (popularity ${stats.popularityRecallAt10.toFixed(3)})`);
    logger.info(stats, 'realtime head epoch');
    history.push(stats);
    onEpoch?.(stats);
  }
  optimizer.dispose();
  const last = history[history.length - 1]!;
  return {
    head,
    history,
    metrics: { recallAt10: last.recallAt10, popularityRecallAt10: last.popularityRecallAt10, valLoss: last.valLoss, initialLoss, valSamples: valSamples.length, trainSamplesPerEpoch },
  };
}

function topIndices(counts: Float64Array, k: number): number[] {
  return Array.from(counts.keys())
    .sort((a, b) => counts[b]! - counts[a]! || a - b)
    .slice(0, k);
}

export interface TrainHeadCommandOptions {
  /** Prepared dataset directory (`aetn prepare` output). */
  data: string;
  /** Trained AETN checkpoint directory whose tied app matrix the head uses (frozen). */
  aetn?: string;
  /** Same as `aetn` (the train command's --base-model flag). */
  baseModel?: string;
  /** Output directory for the head checkpoint. */
  out: string;
  backend?: string;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  seed?: number;
  maxUsers?: number;
  nextK?: number;
  negatives?: number;
  maxEvents?: number;
  layers?: number;
  dModel?: number;
  heads?: number;
  dFf?: number;
  outDim?: number;
  recentK?: number;
  maskWindowMin?: number;
  horizonDays?: number;
  /** Share of users held out for validation (the train command's --val-fraction), e.g. 0.05. */
  valFraction?: number;
  progress?: boolean;
  /** The caller prints JSON: print no summary. `quiet` prints nothing either. */
  json?: boolean;
  quiet?: boolean;
  /** Not supported for the head (a run takes minutes); refused rather than silently ignored. */
  resume?: boolean;
}

/**
 * `aetn train --head realtime`: train on a prepared dataset against an AETN checkpoint, save the
 * head checkpoint, and return its manifest (the train command prints a summary).
 */
export async function trainHeadCommand(opts: TrainHeadCommandOptions): Promise<{ featureId: string; baseFeatureId: string; out: string; metrics: HeadTrainResult['metrics']; history: HeadEpochStats[] }> {
  const { initBackend } = await import('./backend.js');
  const { openPrepared } = await import('../data/prepared.js');
  const { appMatrixFromAetnCheckpoint, saveHead } = await import('./head-checkpoint.js');
  const aetnDir = opts.aetn ?? opts.baseModel;
  if (!aetnDir) throw new UserError('the realtime head needs the AETN model whose app matrix it uses: pass --base-model <dir>');
  if (!opts.data || !opts.out) throw new UserError('the realtime head needs --data <prepared dir> and --out <dir>');
  if (opts.resume) throw new UserError('--resume is not supported with --head realtime: retrain the head (it takes minutes)');
  const { resolveBackendName } = await import('./backend.js');
  if (resolveBackendName(opts.backend) === 'webgpu') {
    // Its loop reads losses and top-k synchronously, which webgpu in Node cannot (no sync readback).
    throw new UserError("training the realtime head on webgpu is not supported (its loop reads back synchronously): train it with --backend wasm; the checkpoint then serves on webgpu (head workers)");
  }
  const backend = await initBackend(opts.backend);
  const ds = await openPrepared(opts.data);
  const base = await appMatrixFromAetnCheckpoint(aetnDir, { vocabHash: ds.vocab.hash });
  if (base.numApps !== ds.vocab.apps.length) throw new UserError(`AETN checkpoint ${aetnDir} has ${base.numApps} apps, the data's vocabulary ${ds.vocab.apps.length}`);
  const cfg = defaultHeadConfig({
    numApps: base.numApps,
    appDim: base.appDim,
    ...(opts.maxEvents !== undefined && { maxEvents: opts.maxEvents }),
    ...(opts.layers !== undefined && { layers: opts.layers }),
    ...(opts.dModel !== undefined && { dModel: opts.dModel }),
    ...(opts.heads !== undefined && { heads: opts.heads }),
    ...(opts.dFf !== undefined && { dFf: opts.dFf }),
    ...(opts.outDim !== undefined && { outDim: opts.outDim }),
    ...(opts.recentK !== undefined && { recentK: opts.recentK }),
  });
  const train: Partial<HeadTrainOptions> = {
    ...(opts.epochs !== undefined && { epochs: opts.epochs }),
    ...(opts.batchSize !== undefined && { batchSize: opts.batchSize }),
    ...(opts.lr !== undefined && { lr: opts.lr }),
    ...(opts.seed !== undefined && { seed: opts.seed }),
    ...(opts.maxUsers !== undefined && { maxUsers: opts.maxUsers }),
    ...(opts.nextK !== undefined && { nextK: opts.nextK }),
    ...(opts.negatives !== undefined && { negatives: opts.negatives }),
    ...(opts.maskWindowMin !== undefined && { maskWindowMs: opts.maskWindowMin * 60_000 }),
    ...(opts.horizonDays !== undefined && { horizonMs: opts.horizonDays * 86_400_000 }),
    ...(opts.progress !== undefined && { progress: opts.progress }),
    ...(opts.valFraction !== undefined && { valPercent: opts.valFraction * 100 }),
  };
  logger.info({ data: opts.data, aetn: base.featureId, backend: backend.detail, cfg }, 'training realtime head');
  const result = await trainHead({ examples: () => ds.examples() }, base.appMatrix, cfg, train);
  const manifest = await saveHead(opts.out, result.head, {
    baseFeatureId: base.featureId,
    vocab: ds.vocab as Vocabulary,
    training: { data: opts.data, aetn: aetnDir, ...DEFAULT_HEAD_TRAIN, ...train, history: result.history },
    metrics: result.metrics,
    backend: backend.detail,
  });
  result.head.dispose();
  // The train command prints the "written to" line (or --json); this adds what the run achieved.
  if (!opts.json && !opts.quiet) {
    const m = result.metrics;
    const last = result.history[result.history.length - 1]!;
    process.stdout.write(
      `realtime head: ${result.history.length} epochs, ${m.trainSamplesPerEpoch} samples/epoch, loss ${m.initialLoss.toFixed(4)} -> ${last.trainLoss.toFixed(4)}, validation loss ${m.valLoss.toFixed(4)}\n` +
        `realtime head: recall@10 of the next ${train.nextK ?? DEFAULT_HEAD_TRAIN.nextK} installs ${m.recallAt10.toFixed(4)}, popularity baseline ${m.popularityRecallAt10.toFixed(4)} (${m.valSamples} validation samples)\n`,
    );
  }
  return { featureId: manifest.featureId, baseFeatureId: manifest.baseFeatureId, out: opts.out, metrics: result.metrics, history: result.history };
}
