// A tiny synthetic world for realtime-head tests: apps fall into clusters ("camera", "games", ...),
// the frozen app matrix places each app near its cluster centroid (as a trained AETN would), and
// users install apps in bursty sessions (a few apps of one cluster within minutes, sessions days
// apart). Within a session the next installs are predictable from the most recent ones; across
// sessions they are not: exactly the short-term signal the head must pick up.
import type { UserExample, Vocabulary } from '../../src/data/types.js';
import { Sfc32 } from '../../src/util/random.js';
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { encodeHeadBatch, type RealtimeHead, type RecentEvents } from '../../src/model/realtime-head.js';

export interface World {
  numApps: number;
  appDim: number;
  clusters: number;
  perCluster: number;
  appMatrix: Float32Array;
  vocab: Vocabulary;
  users: UserExample[];
  clusterOf: (app: number) => number;
}

export const DAY = 86_400_000;
export const MIN = 60_000;
export const T0 = Date.UTC(2026, 0, 1);

export function makeWorld(opts: { users: number; clusters?: number; perCluster?: number; appDim?: number; seed?: number } = { users: 300 }): World {
  const clusters = opts.clusters ?? 6;
  const perCluster = opts.perCluster ?? 10;
  const appDim = opts.appDim ?? 16;
  const M = clusters * perCluster;
  const rng = new Sfc32(opts.seed ?? 7, 'world');
  const gauss = () => rng.normal();
  const centroids = Array.from({ length: clusters }, () => Array.from({ length: appDim }, () => gauss()));
  const appMatrix = new Float32Array(M * appDim);
  for (let a = 0; a < M; a++) {
    const c = Math.floor(a / perCluster);
    for (let j = 0; j < appDim; j++) appMatrix[a * appDim + j] = centroids[c]![j]! + 0.3 * gauss();
  }
  const vocab: Vocabulary = {
    hash: `test-vocab-${M}-${opts.seed ?? 7}`,
    categories: Array.from({ length: clusters }, (_, c) => `cluster${c}`),
    apps: Array.from({ length: M }, (_, a) => ({ index: a, appId: `app${a}`, category: Math.floor(a / perCluster), packages: [`com.test.app${a}`, `com.test.app${a}.lite`] })),
  };
  const users: UserExample[] = [];
  for (let u = 0; u < opts.users; u++) users.push(makeUser(`u${String(u).padStart(5, '0')}`, rng, clusters, perCluster));
  return { numApps: M, appDim, clusters, perCluster, appMatrix, vocab, users, clusterOf: (a) => Math.floor(a / perCluster) };
}

function makeUser(userId: string, rng: Sfc32, clusters: number, perCluster: number): UserExample {
  const installs: number[] = [];
  const installTimes: number[] = [];
  const uninstalls: number[] = [];
  const uninstallTimes: number[] = [];
  let t = T0 + rng.next() * 5 * DAY;
  const sessions = 3 + Math.floor(rng.next() * 4);
  for (let s = 0; s < sessions; s++) {
    const c = Math.floor(rng.next() * clusters);
    const n = 3 + Math.floor(rng.next() * 3);
    // Within a cluster, a popularity skew: low app ids are installed more often.
    const picked = new Set<number>();
    while (picked.size < n) picked.add(c * perCluster + Math.floor(perCluster * rng.next() ** 2));
    for (const a of picked) {
      installs.push(a);
      installTimes.push(t);
      t += (1 + rng.next() * 10) * MIN;
    }
    if (rng.next() < 0.3 && installs.length > 0) {
      uninstalls.push(installs[Math.floor(rng.next() * installs.length)]!);
      uninstallTimes.push(t);
    }
    t += (2 + rng.next() * 10) * DAY;
  }
  return {
    userId,
    retention: Int32Array.from(new Set(installs)).sort(),
    installs: Int32Array.from(installs),
    installDates: new Int32Array(installs.length),
    installTimes: Float64Array.from(installTimes),
    uninstalls: Int32Array.from(uninstalls),
    uninstallDates: new Int32Array(uninstalls.length),
    uninstallTimes: Float64Array.from(uninstallTimes),
    lastActiveMs: Math.max(installTimes[installTimes.length - 1] ?? 0, uninstallTimes[uninstallTimes.length - 1] ?? 0),
  };
}

export function sourceOf(users: UserExample[]) {
  return {
    async *examples() {
      for (const u of users) yield u;
    },
  };
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return d / Math.sqrt(na * nb);
}

/** The reference: RealtimeHead.forward on tfjs at full width, one vector per state. */
export function tfjsVectors(head: RealtimeHead, states: readonly RecentEvents[], nowMs: number): Float32Array[] {
  const batch = encodeHeadBatch(states, nowMs, head.cfg);
  const out = tf.tidy(() => head.forward(batch, false));
  const flat = out.dataSync() as Float32Array;
  out.dispose();
  const d = head.cfg.outDim;
  return states.map((_, i) => flat.slice(i * d, (i + 1) * d));
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
