// The training loop of `aetn train`: streams a prepared dataset through a shuffle buffer, splits a
// validation set by user-id hash, computes gradients on one or more model replicas (worker threads
// give the single-threaded wasm backend both cores), applies Adam on one flat parameter vector,
// decays the learning rate per epoch, stops early on validation L_main, and checkpoints every epoch
// (best weights for use, latest weights + optimizer state for --resume).
import { availableParallelism } from 'node:os';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { UserExample, Vocabulary } from '../data/types.js';
import { UserError } from '../util/errors.js';
import { child } from '../util/log.js';
import { Progress } from '../util/progress.js';
import { initBackend, resolveBackendName, webgpuMaxBufferBytes, type BackendInfo } from './backend.js';
import {
  MANIFEST_FILE,
  RESUME_FILE,
  configToJson,
  loadCheckpoint,
  loadResume,
  newFeatureId,
  saveCheckpoint,
  saveResume,
  type CheckpointManifest,
  type ManifestDraft,
} from './checkpoint.js';
import { resolveGpuMemoryBudgetMiB, resolveMemoryBudget, type EngineMemoryOptions } from './memory.js';
import { lossSvg } from './plot.js';
import { FlatAdam } from './train-adam.js';
import {
  LOSS_KEYS,
  LocalEngine,
  defaultFactoryUrl,
  loadFactory,
  type Engine,
  type LossValues,
} from './train-engine.js';
import { WorkerPool } from './worker-pool.js';
import { writeFileAtomic } from '../util/fs.js';
import { fnv1a32Units, mixSeed } from '../util/hash.js';
import { mulberry32 } from '../util/random.js';

const logger = child('train');

/** A stream of training users with its vocabulary (a prepared dataset, or an in-memory one in tests). */
export interface TrainData {
  vocab: Vocabulary;
  seqLen?: number;
  dateBuckets?: number;
  numUsers?: number;
  /** Where the data came from (written to the manifest). */
  source: string;
  /** A fresh pass over all users; called once per epoch for training and once for validation. */
  examples(): AsyncIterable<UserExample>;
}

export interface TrainOptions {
  /** A directory written by `aetn prepare`, or a data source. */
  data: string | TrainData;
  out: string;
  variant?: string;
  /** Model config overrides (dModel, dFf, heads, encLayers, decLayers, dEmb, seqLen, ...). */
  sizes?: Record<string, number>;
  epochs?: number;
  seed?: number;
  /** Users per step; default: the paper's 1000, smaller on small datasets (see trainingSchedule). */
  batchSize?: number;
  /** Adam learning rate of the first epoch; default: the paper's 1e-4 at batch 1000 (see trainingSchedule). */
  lr?: number;
  /**
   * Fewest optimizer steps of an epoch; an epoch makes more passes over the data to reach it.
   * Default: DEFAULT_MIN_EPOCH_STEPS with the derived batch, 1 (no extra passes) when batchSize is given.
   */
  minEpochSteps?: number;
  lrDecay?: number;
  backend?: string;
  workers?: number;
  /** Read at most this many users of the dataset per pass (training and validation together). */
  maxUsers?: number;
  /** Stop an epoch after this many steps (benchmarks, quick runs). */
  maxStepsPerEpoch?: number;
  resume?: boolean;
  /** Epochs without a better validation L_main before stopping. */
  patience?: number;
  valFraction?: number;
  shuffleBuffer?: number;
  /** Model factory module (tests use a stand-in); default: the AETN factory. */
  factoryUrl?: string;
  silentProgress?: boolean;
  /**
   * Memory per model replica (wasm heap), MiB; default AETN_MEMORY_BUDGET_MIB or 1536. Each replica
   * computes its part of a batch in chunks of users that fit (memory.ts); the step is the same.
   */
  memoryBudgetMiB?: number;
  /** Users per chunk, overriding the budget (tests, benchmarks). */
  chunkUsers?: number;
}

export interface EpochRecord {
  epoch: number; // 1-based
  lr: number;
  steps: number;
  users: number;
  seconds: number;
  usersPerSec: number;
  gflopPerSec: number;
  train: LossValues;
  val: LossValues | null;
  valUsers: number;
  best: boolean;
}

export interface TrainResult {
  manifest: CheckpointManifest;
  history: EpochRecord[];
  stoppedEarly: boolean;
  backend: BackendInfo;
}

interface LoopState {
  history: EpochRecord[];
  steps: Array<[number, number]>;
  globalStep: number;
  bestEpoch: number;
  bestVal: number;
  badEpochs: number;
  stoppedEarly: boolean;
  createdAt: string;
}

/** Options that must be equal when a run is resumed (anything else may change, e.g. --epochs). */
function fixedOptions(o: Required<Pick<TrainOptions, 'seed' | 'batchSize' | 'lr' | 'lrDecay' | 'valFraction' | 'shuffleBuffer'>> & { maxUsers: number | null }, cfg: unknown, kind: string): Record<string, unknown> {
  return { kind, config: configToJson(cfg), seed: o.seed, batchSize: o.batchSize, lr: o.lr, lrDecay: o.lrDecay, valFraction: o.valFraction, shuffleBuffer: o.shuffleBuffer, maxUsers: o.maxUsers };
}

/** Validation membership by a salted FNV-1a hash of the user id: stable across runs and shards. */
export function isValidationUser(userId: string, fraction: number): boolean {
  if (fraction <= 0) return false;
  let h = fnv1a32Units(userId, 0x9747b28c);
  h ^= h >>> 13;
  h = Math.imul(h, 0x5bd1e995);
  h ^= h >>> 15;
  return (h >>> 0) % 100000 < fraction * 100000;
}

/** Training batches of one epoch: a seeded shuffle buffer over the stream (never the whole dataset). */
export async function* trainBatches(
  data: TrainData,
  o: { batchSize: number; shuffleBuffer: number; valFraction: number; maxUsers?: number; seed: number },
  epoch: number,
): AsyncGenerator<UserExample[]> {
  const rand = mulberry32(mixSeed(o.seed, epoch, 0x5f3759df));
  const cap = Math.max(1, o.shuffleBuffer);
  const buffer: UserExample[] = [];
  let batch: UserExample[] = [];
  let seen = 0;
  for await (const ex of data.examples()) {
    if (o.maxUsers !== undefined && seen >= o.maxUsers) break;
    seen++;
    if (isValidationUser(ex.userId, o.valFraction)) continue;
    if (buffer.length < cap) {
      buffer.push(ex);
      continue;
    }
    const j = Math.floor(rand() * cap);
    batch.push(buffer[j]!);
    buffer[j] = ex;
    if (batch.length === o.batchSize) {
      yield batch;
      batch = [];
    }
  }
  for (let i = buffer.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [buffer[i], buffer[j]] = [buffer[j]!, buffer[i]!];
  }
  for (const ex of buffer) {
    batch.push(ex);
    if (batch.length === o.batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

async function* validationBatches(data: TrainData, o: { batchSize: number; valFraction: number; maxUsers?: number }): AsyncGenerator<UserExample[]> {
  let batch: UserExample[] = [];
  let seen = 0;
  for await (const ex of data.examples()) {
    if (o.maxUsers !== undefined && seen >= o.maxUsers) break;
    seen++;
    if (!isValidationUser(ex.userId, o.valFraction)) continue;
    batch.push(ex);
    if (batch.length === o.batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

export async function openTrainData(dir: string): Promise<TrainData> {
  const { openPrepared } = await import('../data/prepared.js');
  const ds = await openPrepared(dir);
  return {
    vocab: ds.vocab,
    seqLen: ds.manifest.seqLen,
    dateBuckets: ds.manifest.dateBuckets,
    numUsers: ds.manifest.numUsers,
    source: dir,
    examples: () => ds.examples(),
  };
}

/** Starts the engine for a config: the calling thread for 1 worker, a worker pool for more. */
export async function startEngine(opts: {
  factoryUrl: string;
  cfg: unknown;
  seed: number;
  backend: string;
  workers: number;
  /** Memory budget (or fixed chunk) of every replica; see memory.ts. */
  memory?: EngineMemoryOptions;
}): Promise<{ engine: Engine; local: LocalEngine }> {
  if (opts.backend === 'webgpu' && opts.workers > 1) {
    // Worker engines read back synchronously, which webgpu in Node cannot; and there is one device.
    throw new UserError(`backend 'webgpu' runs one engine on its one device: use 1 worker (got ${opts.workers})`);
  }
  const factory = await loadFactory(opts.factoryUrl);
  // Resolved once here (option, else environment, else default), so every worker gets the same.
  const memory: EngineMemoryOptions =
    opts.memory?.chunkUsers !== undefined ? { chunkUsers: opts.memory.chunkUsers } : { memoryBudgetMiB: resolveMemoryBudget(opts.memory?.memoryBudgetMiB) / 2 ** 20 };
  // On a GPU the inference chunk comes from the device's memory budget and its largest buffer.
  if (opts.backend === 'webgpu' && memory.chunkUsers === undefined) {
    memory.device = { budgetMiB: resolveGpuMemoryBudgetMiB(opts.memory?.gpuMemoryBudgetMiB), maxBufferBytes: webgpuMaxBufferBytes() };
  }
  // The local replica gives the initial weights and the layout; with 1 worker it does the work.
  const local = LocalEngine.create(factory, opts.cfg, opts.seed, memory);
  if (opts.workers <= 1) return { engine: local, local };
  const pool = await WorkerPool.start({
    factoryUrl: opts.factoryUrl,
    cfg: opts.cfg,
    seed: opts.seed,
    backend: opts.backend,
    workers: opts.workers,
    numParams: local.numParams,
    layout: local.layout,
    flopsPerUser: local.flopsPerUser,
    memory,
    chunkUsers: local.chunkUsers,
  });
  return { engine: pool, local };
}

/** The paper's schedule: batch 1000 at Adam lr 1e-4, for datasets of millions of users. */
export const PAPER_BATCH = 1000;
export const PAPER_LR = 1e-4;
export const DEFAULT_MIN_EPOCH_STEPS = 30;

/**
 * Training length counted in steps, so that small datasets train enough. The paper's batch of 1000
 * gives 957 users one Adam step per epoch: ten epochs are ten steps, and the network barely moves
 * from its initialisation. Unless set:
 *  - the batch is the paper's 1000, cut to a 32nd of the training users (at least 32), so an epoch
 *    has about 32 steps or more;
 *  - the learning rate grows as the batch shrinks (1e-4 x 1000 / batch, at most 1e-3): smaller
 *    batches take more, noisier steps, and Adam at 1e-3 is its usual small-batch setting;
 *  - an epoch makes enough passes over the data to take at least `minEpochSteps` steps (default
 *    DEFAULT_MIN_EPOCH_STEPS; with a batch size given, 1: the epochs as asked, unless set), so the
 *    default 10 epochs take at least 300 steps.
 * On a dataset of 32,000 training users or more all three are the paper's (one pass per epoch).
 */
export function trainingSchedule(o: { trainUsers?: number; epochs: number; batchSize?: number; lr?: number; minEpochSteps?: number }): {
  batchSize: number;
  lr: number;
  minEpochSteps: number;
  passesPerEpoch: number;
} {
  const n = o.trainUsers;
  const batchSize = o.batchSize ?? (n === undefined ? PAPER_BATCH : Math.min(PAPER_BATCH, Math.max(32, Math.floor(n / 32))));
  const lr = o.lr ?? Math.min(1e-3, (PAPER_LR * PAPER_BATCH) / batchSize);
  const stepsPerPass = n === undefined ? Infinity : Math.max(1, Math.ceil(n / batchSize));
  const minEpochSteps = o.minEpochSteps ?? (o.batchSize === undefined ? DEFAULT_MIN_EPOCH_STEPS : 1);
  const passesPerEpoch = Math.max(1, Math.ceil(minEpochSteps / stepsPerPass));
  return { batchSize, lr, minEpochSteps, passesPerEpoch };
}

function fmtLoss(x: number): string {
  return Number.isFinite(x) ? x.toPrecision(4) : String(x);
}

export async function train(options: TrainOptions): Promise<TrainResult> {
  const o = {
    variant: options.variant ?? 'aetn',
    epochs: options.epochs ?? 10,
    seed: options.seed ?? 1,
    batchSize: options.batchSize ?? PAPER_BATCH,
    lr: options.lr ?? PAPER_LR,
    minEpochSteps: options.minEpochSteps ?? 1,
    passesPerEpoch: 1,
    lrDecay: options.lrDecay ?? 0.8,
    // webgpu: one engine drives the one device.
    workers: options.workers ?? (resolveBackendName(options.backend) === 'webgpu' ? 1 : Math.max(1, availableParallelism())),
    patience: options.patience ?? 2,
    valFraction: options.valFraction ?? 0.05,
    maxUsers: options.maxUsers,
    maxStepsPerEpoch: options.maxStepsPerEpoch,
    factoryUrl: options.factoryUrl ?? defaultFactoryUrl(),
  };
  const checks: Array<[string, number, number]> = [
    ['epochs', o.epochs, 1],
    ['batch-size', o.batchSize, 1],
    ['workers', o.workers, 1],
    ['patience', o.patience, 1],
    ['min-epoch-steps', o.minEpochSteps, 1],
  ];
  for (const [k, v, min] of checks) if (!Number.isInteger(v) || v < min) throw new UserError(`--${k} must be an integer >= ${min} (got ${v})`);
  if (!(o.lr > 0)) throw new UserError(`--lr must be > 0 (got ${o.lr})`);
  if (!(o.valFraction >= 0 && o.valFraction < 1)) throw new UserError(`--val-fraction must be in [0, 1) (got ${o.valFraction})`);
  if (o.maxUsers !== undefined && !(Number.isInteger(o.maxUsers) && o.maxUsers > 0)) throw new UserError(`--max-users must be a positive integer (got ${o.maxUsers})`);

  const out = options.out;
  const hasModel = existsSync(join(out, MANIFEST_FILE)) || existsSync(join(out, RESUME_FILE));
  if (hasModel && !options.resume) {
    throw new UserError(`${out} already holds a model: pass --resume to continue its training, or choose another --out`);
  }
  const data = typeof options.data === 'string' ? await openTrainData(options.data) : options.data;
  const trainUsers = data.numUsers !== undefined ? Math.round(Math.min(data.numUsers, o.maxUsers ?? Infinity) * (1 - o.valFraction)) : undefined;
  const schedule = trainingSchedule({ trainUsers, epochs: o.epochs, batchSize: options.batchSize, lr: options.lr, minEpochSteps: options.minEpochSteps });
  Object.assign(o, schedule);
  const backend = await initBackend(options.backend);
  const factory = await loadFactory(o.factoryUrl);
  const cfg = factory.makeConfig(data.vocab, { ...(options.sizes ?? {}), variant: o.variant }, { seqLen: data.seqLen, dateBuckets: data.dateBuckets });
  const shuffleBuffer = options.shuffleBuffer ?? 10 * o.batchSize;
  const fixed = fixedOptions({ ...o, shuffleBuffer, maxUsers: o.maxUsers ?? null }, cfg, factory.kind);

  const memory: EngineMemoryOptions = { memoryBudgetMiB: options.memoryBudgetMiB, chunkUsers: options.chunkUsers };
  const { engine, local } = await startEngine({ factoryUrl: o.factoryUrl, cfg, seed: o.seed, backend: backend.name, workers: o.workers, memory });
  try {
    const weights = await local.getWeightsAsync();
    const adam = new FlatAdam(local.numParams);
    let featureId = newFeatureId(factory.variantOf(cfg));
    let loop: LoopState = { history: [], steps: [], globalStep: 0, bestEpoch: 0, bestVal: Infinity, badEpochs: 0, stoppedEarly: false, createdAt: new Date().toISOString() };
    let best: Float32Array | undefined;

    if (options.resume) {
      const saved = await loadResume(out);
      if (!saved) throw new UserError(`--resume: ${out} holds no resume state (${RESUME_FILE}); start a new training without --resume`);
      const was = JSON.parse(saved.state.configHash) as Record<string, unknown>;
      const diff = Object.keys(fixed).filter((k) => JSON.stringify(fixed[k]) !== JSON.stringify(was[k]));
      if (diff.length > 0) {
        throw new UserError(`--resume: the run in ${out} used other settings (${diff.join(', ')} differ); resume with the same flags or train into a new --out`);
      }
      if (saved.weights.length !== weights.length) throw new UserError(`--resume: ${out} holds ${saved.weights.length} parameters, the model ${weights.length}`);
      weights.set(saved.weights);
      adam.restore(saved.state.adamStep, saved.m, saved.v);
      featureId = saved.state.featureId;
      loop = saved.state.loop as unknown as LoopState;
      if (loop.bestEpoch > 0) best = (await loadCheckpoint(out, { vocabHash: data.vocab.hash })).weights;
      logger.info({ featureId, epochsDone: saved.state.epochsDone }, 'resuming training');
      if (loop.stoppedEarly || loop.history.length >= o.epochs) {
        logger.info({ epochsDone: loop.history.length, stoppedEarly: loop.stoppedEarly }, 'nothing left to train');
      }
    }
    await mkdir(out, { recursive: true });
    await engine.setWeights(weights);

    const flops = engine.flopsPerUser.training;
    logger.info(
      {
        featureId,
        variant: factory.variantOf(cfg),
        backend: backend.name,
        backendDetail: backend.detail,
        workers: o.workers,
        params: local.numParams,
        data: data.source,
        // Users per model call in each replica (memory budget): a batch's part is cut into chunks.
        chunkUsers: engine.chunkUsers.training,
        // The schedule (trainingSchedule): set by the flags, or derived from the dataset's size.
        batchSize: o.batchSize,
        lr: o.lr,
        passesPerEpoch: o.passesPerEpoch,
      },
      'training',
    );

    const draft = (metrics: Record<string, unknown>): ManifestDraft => ({
      featureId,
      modelKind: factory.kind,
      variant: factory.variantOf(cfg),
      config: configToJson(cfg),
      dim: factory.embeddingDim(cfg),
      vocab: { hash: data.vocab.hash, numApps: data.vocab.apps.length, numCategories: data.vocab.categories.length },
      backend: backend.name,
      backendDetail: backend.detail,
      workers: o.workers,
      seed: o.seed,
      createdAt: loop.createdAt,
      updatedAt: new Date().toISOString(),
      metrics,
      training: {
        data: data.source,
        epochs: o.epochs,
        batchSize: o.batchSize,
        lr: o.lr,
        lrDecay: o.lrDecay,
        patience: o.patience,
        valFraction: o.valFraction,
        shuffleBuffer,
        maxUsers: o.maxUsers ?? null,
        maxStepsPerEpoch: o.maxStepsPerEpoch ?? null,
        minEpochSteps: o.minEpochSteps,
        passesPerEpoch: o.passesPerEpoch,
        chunkUsers: Number.isFinite(engine.chunkUsers.training) ? engine.chunkUsers.training : null,
      },
    });
    const metricsOf = (): Record<string, unknown> => {
      const b = loop.history.find((h) => h.epoch === loop.bestEpoch);
      return {
        bestEpoch: loop.bestEpoch,
        epochsRun: loop.history.length,
        stoppedEarly: loop.stoppedEarly,
        valMain: b?.val?.main ?? null,
        valLosses: b?.val ?? null,
        trainLosses: b?.train ?? null,
        usersPerSec: b?.usersPerSec ?? null,
        gflopPerSec: b?.gflopPerSec ?? null,
        trainSeconds: loop.history.reduce((a, h) => a + h.seconds, 0),
      };
    };
    const writeReports = async () => {
      const log = { featureId, variant: factory.variantOf(cfg), backend: backend.name, workers: o.workers, flopsPerUserTraining: flops, epochs: loop.history, steps: loop.steps };
      writeFileAtomic(join(out, 'train-log.json'), `${JSON.stringify(log, null, 1)}\n`);
      const svg = lossSvg({
        title: `${featureId} (${factory.variantOf(cfg)}, ${backend.name}, ${o.workers} worker${o.workers > 1 ? 's' : ''})`,
        steps: loop.steps,
        epochTrain: loop.history.map((h) => [h.epoch, h.train.main]),
        epochVal: loop.history.filter((h) => h.val).map((h) => [h.epoch, h.val!.main]),
      });
      writeFileAtomic(join(out, 'loss.svg'), svg);
    };

    const grad = new Float32Array(local.numParams);
    const estUsers = trainUsers !== undefined ? trainUsers * o.passesPerEpoch : undefined;
    for (let epoch = loop.history.length; epoch < o.epochs && !loop.stoppedEarly; epoch++) {
      const lr = o.lr * o.lrDecay ** epoch;
      const progress = new Progress({ label: `epoch ${epoch + 1}/${o.epochs}`, total: estUsers, unit: 'users', silent: options.silentProgress });
      const sums: LossValues = { total: 0, main: 0, aux: 0, mask: 0, reg: 0 };
      let users = 0;
      let steps = 0;
      const t0 = performance.now();
      // Pass 0 shuffles as a one-pass epoch always has; extra passes (small data) get their own order.
      for (let pass = 0; pass < o.passesPerEpoch && !(o.maxStepsPerEpoch !== undefined && steps >= o.maxStepsPerEpoch); pass++) {
      const batches = trainBatches(data, { ...o, shuffleBuffer }, pass === 0 ? epoch : mixSeed(epoch, pass, 0x2545f491));
      let next = batches.next();
      while (true) {
        const it = await next;
        if (it.done) break;
        const batch = it.value;
        const pending = engine.gradient(batch, mixSeed(o.seed, epoch, steps), grad);
        // Read the next batch from disk while the workers compute this one.
        next = o.maxStepsPerEpoch !== undefined && steps + 1 >= o.maxStepsPerEpoch ? Promise.resolve({ done: true, value: undefined }) : batches.next();
        const r = await pending;
        if (!Number.isFinite(r.losses.total)) {
          throw new UserError(`training diverged at epoch ${epoch + 1} step ${steps + 1} (loss ${r.losses.total}); lower --lr`, 1);
        }
        adam.apply(weights, grad, lr);
        await engine.setWeights(weights);
        for (const k of LOSS_KEYS) sums[k] += r.losses[k] * r.n;
        users += r.n;
        steps++;
        loop.globalStep++;
        loop.steps.push([loop.globalStep, Number(r.losses.total.toPrecision(6))]);
        progress.tick(r.n, `loss ${fmtLoss(r.losses.total)} main ${fmtLoss(r.losses.main)}`);
      }
      await batches.return(undefined);
      }
      const seconds = (performance.now() - t0) / 1000;
      if (users === 0) throw new UserError(`no training users in ${data.source} (after the ${o.valFraction * 100}% validation split)`);
      const trainLoss = Object.fromEntries(LOSS_KEYS.map((k) => [k, sums[k] / users])) as unknown as LossValues;

      // Validation L_main: no dropout, no masking.
      const vs: LossValues = { total: 0, main: 0, aux: 0, mask: 0, reg: 0 };
      let valUsers = 0;
      for await (const vb of validationBatches(data, { ...o })) {
        const r = await engine.evaluate(vb);
        for (const k of LOSS_KEYS) vs[k] += r.losses[k] * r.n;
        valUsers += r.n;
      }
      const valLoss = valUsers > 0 ? (Object.fromEntries(LOSS_KEYS.map((k) => [k, vs[k] / valUsers])) as unknown as LossValues) : null;
      // Without validation users (tiny data), early stopping falls back to the training L_main.
      const score = valLoss?.main ?? trainLoss.main;
      const improved = score < loop.bestVal;
      const rec: EpochRecord = {
        epoch: epoch + 1,
        lr,
        steps,
        users,
        seconds,
        usersPerSec: users / seconds,
        gflopPerSec: (flops * users) / seconds / 1e9,
        train: trainLoss,
        val: valLoss,
        valUsers,
        best: improved,
      };
      loop.history.push(rec);
      progress.finish(`loss ${fmtLoss(trainLoss.total)} val main ${valLoss ? fmtLoss(valLoss.main) : 'n/a'}`);
      if (improved) {
        loop.bestVal = score;
        loop.bestEpoch = epoch + 1;
        loop.badEpochs = 0;
        best = weights.slice();
        await saveCheckpoint(out, draft(metricsOf()), local.layout, best);
      } else {
        loop.badEpochs++;
        if (loop.badEpochs >= o.patience) loop.stoppedEarly = true;
      }
      await saveResume(out, { featureId, configHash: JSON.stringify(fixed), epochsDone: epoch + 1, adamStep: adam.step, loop: loop as unknown as Record<string, unknown> }, weights, adam.m, adam.v);
      await writeReports();
      logger.info(
        {
          epoch: epoch + 1,
          lr,
          users,
          seconds: Number(seconds.toFixed(2)),
          usersPerSec: Number(rec.usersPerSec.toFixed(1)),
          gflopPerSec: Number(rec.gflopPerSec.toFixed(2)),
          train: trainLoss,
          valMain: valLoss?.main ?? null,
          best: improved,
          stoppedEarly: loop.stoppedEarly,
        },
        'epoch done',
      );
    }
    if (!best) throw new UserError(`training in ${out} produced no checkpoint`, 1);
    // Final manifest: the best weights with the run's complete metrics.
    const saved = await saveCheckpoint(out, draft(metricsOf()), local.layout, best);
    await writeReports();
    return { manifest: saved.manifest, history: loop.history, stoppedEarly: loop.stoppedEarly, backend };
  } finally {
    await engine.close();
    if (engine !== local) await local.close();
  }
}
