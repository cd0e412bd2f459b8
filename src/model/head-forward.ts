// The realtime head as the pipeline calls it (loadHead): which forward each user gets, host or
// tfjs, and batching by width. The checkpoint itself is read by head-checkpoint.ts.
import * as tf from '@tensorflow/tfjs-core';
import { runtimeSettings } from '../config/config.js';
import { UserError } from '../util/errors.js';
import { HostHead } from './realtime-head-host.js';
import { encodeHeadBatch, narrowWidth, type RecentEvents } from './realtime-head.js';
import { loadHeadModel, type HeadCheckFor, type HeadManifest } from './head-checkpoint.js';

/** What a loaded head tells its caller, in this thread (LoadedHead) or on workers (HeadPool). */
export interface HeadInfo {
  featureId: string;
  baseFeatureId: string;
  /** Width of the short-term vector. */
  dim: number;
  /** Events per user the head looks at (the pipeline keeps at least this many). */
  maxEvents: number;
  manifest: HeadManifest;
  /** Package name -> app index, for every package merged into a vocabulary app. */
  appIndexOfPackage: Map<string, number>;
}

/** What the realtime pipeline holds: a loaded head plus the vocabulary mapping it needs. */
export interface LoadedHead extends HeadInfo {
  /** 'host' (the default): users with <= HOST_MAX_EVENTS events on realtime-head-host.ts, the rest on tfjs; 'tfjs' (AETN_HEAD_HOST=0): everyone on tfjs. */
  forward: 'host' | 'tfjs';
  /**
   * Short-term vectors of a batch of users at time `nowMs` (synchronous).
   * Events may come in any order; the newest `maxEvents` are used. Throws UserError on an app index
   * outside the vocabulary or an unknown type, so map packages with `appIndexOfPackage` first.
   * On webgpu (no synchronous readback in Node) it throws: use embedAsync, as the head workers do.
   */
  embed(states: readonly RecentEvents[], nowMs: number): Float32Array[];
  /** The same vectors as embed, read back asynchronously: works on every backend, webgpu included. */
  embedAsync(states: readonly RecentEvents[], nowMs: number): Promise<Float32Array[]>;
  dispose(): void;
}

export interface LoadHeadOptions extends HeadCheckFor {
  /** tfjs backend: wasm (default), cpu, tensorflow, webgpu. */
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
  return runtimeSettings().headHost ? 'host' : 'tfjs';
}

export async function loadHead(modelDir: string, opts: LoadHeadOptions = {}): Promise<LoadedHead> {
  const { initBackend } = await import('./backend.js');
  const backend = await initBackend(opts.backend);
  // WebGPU in Node reads back only asynchronously: the host tables and weights are read with data().
  const asyncOnly = backend.name === 'webgpu';
  const { head, manifest, vocab } = await loadHeadModel(modelDir, opts);
  if (asyncOnly) await head.freezeAsync();
  else head.freeze();
  const appIndexOfPackage = new Map<string, number>();
  for (const app of vocab.apps) for (const p of app.packages ?? []) appIndexOfPackage.set(p, app.index);
  const maxBatch = opts.maxBatch ?? 1024;
  const dim = head.cfg.outDim;
  const forward = headForwardKind(opts.forward);
  const host = forward === 'host' ? new HostHead(head, { maxBatch, weights: asyncOnly ? await head.readWeights() : undefined }) : null;
  const hostMax = host ? hostMaxEvents(host.gemmKind) : -1;
  // Users are grouped by how many events they have (widths 8, 16, 32, ...): a forward pass costs
  // per position, and most users in a Kafka batch have far fewer events than maxEvents.
  // Each group's passes: [rows, the tfjs result] (the caller reads it, synchronously or not).
  const groupPasses = (states: readonly RecentEvents[], rows: number[], width: number, nowMs: number): Array<[number[], () => tf.Tensor2D]> => {
    const passes: Array<[number[], () => tf.Tensor2D]> = [];
    for (let i = 0; i < rows.length; i += maxBatch) {
      const part = rows.slice(i, i + maxBatch);
      passes.push([part, () => tf.tidy(() => head.forward(encodeHeadBatch(part.map((r) => states[r]!), nowMs, head.cfg, width), false))]);
    }
    return passes;
  };
  const spread = (part: number[], flat: Float32Array, out: Float32Array[]) => part.forEach((r, j) => (out[r] = flat.slice(j * dim, (j + 1) * dim)));
  /** Host rows done into `out`; returns the tfjs groups, narrowest first. */
  const plan = (states: readonly RecentEvents[], nowMs: number, out: Float32Array[]): Array<[number, number[]]> => {
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
    return [...groups.entries()].sort((a, b) => a[0] - b[0]);
  };
  const embedSync = (states: readonly RecentEvents[], nowMs: number): Float32Array[] => {
    if (asyncOnly) throw new UserError('realtime head on webgpu: results are read back asynchronously only; run it on head workers (embedAsync)');
    const out: Float32Array[] = new Array(states.length);
    for (const [w, rows] of plan(states, nowMs, out)) {
      for (const [part, run] of groupPasses(states, rows, w, nowMs)) {
        const t = run();
        const flat = t.dataSync() as Float32Array;
        t.dispose();
        spread(part, flat, out);
      }
    }
    return out;
  };
  return {
    featureId: manifest.featureId,
    baseFeatureId: manifest.baseFeatureId,
    dim,
    maxEvents: head.cfg.maxEvents,
    manifest,
    appIndexOfPackage,
    forward,
    embed: embedSync,
    async embedAsync(states, nowMs) {
      // Sync backends take the synchronous path: the same calls and bits as embed.
      if (!asyncOnly) return embedSync(states, nowMs);
      const out: Float32Array[] = new Array(states.length);
      for (const [w, rows] of plan(states, nowMs, out)) {
        for (const [part, run] of groupPasses(states, rows, w, nowMs)) {
          const t = run();
          try {
            spread(part, (await t.data()) as Float32Array, out);
          } finally {
            t.dispose();
          }
        }
      }
      return out;
    },
    dispose: () => head.dispose(),
  };
}
