// The host forward (src/model/realtime-head-host.ts) against RealtimeHead.forward on tfjs (cpu
// backend, full-width padded batches): same function, batch-invariant bits, same input checks.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/model/backend.js';
import { RealtimeHead, defaultHeadConfig, encodeHeadBatch, type HeadEvent, type RealtimeHeadConfig, type RecentEvents } from '../../src/model/realtime-head.js';
import { HostHead } from '../../src/model/realtime-head-host.js';
import { saveHead } from '../../src/model/head-checkpoint.js';
import { HOST_MAX_EVENTS, HOST_MAX_EVENTS_JS, hostMaxEvents, loadHead } from '../../src/model/head-forward.js';
import { Sfc32 } from '../../src/util/random.js';
import { UserError } from '../../src/util/errors.js';
import { native, restoreNativeGemmEnvAfterAll, why } from './native-fixture.js';
import { maxAbsDiff, tfjsVectors } from './head-fixtures.js';

const MIN = 60_000;
const NOW = Date.UTC(2026, 3, 1);
const M = 300;
const DA = 16;

restoreNativeGemmEnvAfterAll();

/**
 * A head whose every weight is random at a scale that makes activations O(1): with the init's small
 * weights attention is nearly uniform and biases are zero, so a masking or pooling mistake would
 * hide below the tolerance.
 */
function randomHead(over: Partial<RealtimeHeadConfig>, seed: number): RealtimeHead {
  const rng = new Sfc32(seed, 'host-head');
  const cfg = defaultHeadConfig({ numApps: M, appDim: DA, dropout: 0, ...over });
  const appMatrix = new Float32Array(M * DA).map(() => rng.normal());
  const head = new RealtimeHead(cfg, appMatrix, seed);
  for (const { name, v } of head.namedVariables) {
    const vals = new Float32Array(v.size);
    const std = v.shape.length === 2 ? 1 / Math.sqrt(v.shape[0]!) : 0.3;
    for (let i = 0; i < vals.length; i++) vals[i] = (name.endsWith('/g') ? 1 : 0) + std * rng.normal();
    v.assign(tf.tensor(vals, v.shape));
  }
  head.freeze();
  return head;
}

/** A user with n events: unsorted, both types, ages from seconds to months, one timestamp tie. */
function user(rng: Sfc32, n: number): RecentEvents {
  const events: HeadEvent[] = [];
  for (let i = 0; i < n; i++) {
    const ageMin = Math.exp(rng.next() * Math.log(200_000)) - 1;
    events.push({ app: Math.floor(rng.next() * M), type: rng.next() < 0.7 ? 1 : 2, timestampMs: NOW - ageMin * MIN });
  }
  if (n >= 4) events[3] = { ...events[3]!, timestampMs: events[1]!.timestampMs };
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [events[i], events[j]] = [events[j]!, events[i]!];
  }
  return { events };
}

const COUNTS = [0, 1, 2, 3, 5, 8, 17, 32, 40];



const bits = (v: Float32Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');

const GEMMS: ('native' | 'js')[] = native.ok ? ['native', 'js'] : ['js'];

beforeAll(async () => {
  await initBackend('cpu');
});

const CONFIGS: [string, Partial<RealtimeHeadConfig>][] = [
  ['1 layer, default widths', { layers: 1 }],
  ['2 layers, d 32, k 4', { layers: 2, dModel: 32, heads: 4, dFf: 48, recentK: 4, outDim: 24, gapBuckets: 12 }],
];

describe.each(CONFIGS)('host forward equals RealtimeHead.forward (%s)', (_name, over) => {
  let head: RealtimeHead;
  beforeAll(() => {
    head = randomHead(over, 11 + (over.layers ?? 1));
  });
  afterAll(() => head.dispose());

  test.each(GEMMS)('every event count, %s GEMM', (gemm) => {
    const rng = new Sfc32(5, 'users');
    // Each count three times so users of one count also differ in apps, types and ages.
    const states = [...COUNTS, ...COUNTS, ...COUNTS].map((n) => user(rng, n));
    const want = tfjsVectors(head, states, NOW);
    const host = new HostHead(head, { gemm });
    expect(host.gemmKind).toBe(gemm);
    const got = host.embed(states, NOW);
    expect(got).toHaveLength(states.length);
    got.forEach((v, i) => {
      expect(maxAbsDiff(v, want[i]!), `user ${i} with ${states[i]!.events.length} events`).toBeLessThan(2e-5);
      expect(Math.hypot(...v)).toBeCloseTo(1, 5);
    });
    // The weights reach the output: users differ, and users without events get l2norm(b_out).
    expect(maxAbsDiff(got[1]!, got[2]!)).toBeGreaterThan(0.05);
    const b = head.namedVariables.find((p) => p.name === 'out/b')!.v.dataSync() as Float32Array;
    const nb = Math.hypot(...b);
    expect(maxAbsDiff(got[0]!, b.map((x) => x / nb))).toBeLessThan(1e-6);
    // A call of users without any event (no tokens at all).
    const empty = host.embed([{ events: [] }, { events: [] }], NOW);
    expect(bits(empty[0]!)).toBe(bits(got[0]!));
    expect(bits(empty[1]!)).toBe(bits(got[0]!));
  });
});

describe('batch invariance: a user gets the same bits alone and in any batch', () => {
  let head: RealtimeHead;
  beforeAll(() => {
    head = randomHead({ layers: 2, dModel: 32, heads: 2, dFf: 64, outDim: 16 }, 3);
  });
  afterAll(() => head.dispose());

  test.each(GEMMS)(`%s GEMM${why}`, (gemm) => {
    const rng = new Sfc32(9, 'batches');
    const probes = COUNTS.map((n) => user(rng, n));
    // Fillers of every size: enough tokens (> 144 rows) that the native GEMM's fixed-shape blocks
    // put each probe's rows at different block offsets in different batches.
    const fillers = Array.from({ length: 400 }, (_, i) => user(rng, [1, 3, 5, 32, 12, 0, 2][i % 7]!));
    const host = new HostHead(head, { gemm });
    const alone = probes.map((p) => bits(host.embed([p], NOW)[0]!));
    const compositions: RecentEvents[][] = [
      [...probes],
      [...probes].reverse(),
      [...fillers.slice(0, 7), ...probes, ...fillers.slice(7, 50)],
      [...fillers.slice(100, 400), ...probes],
      probes.flatMap((p, i) => [...fillers.slice(i * 13, i * 13 + 13), p]),
    ];
    for (const batch of compositions) {
      const out = host.embed(batch, NOW);
      for (let p = 0; p < probes.length; p++) {
        const i = batch.indexOf(probes[p]!);
        expect(bits(out[i]!), `probe with ${probes[p]!.events.length} events`).toBe(alone[p]);
      }
    }
    // Scratch buffers grown by the big batches leave the small call unchanged, and a split call
    // (maxBatch 5) gives what one pass gives.
    expect(probes.map((p) => bits(host.embed([p], NOW)[0]!))).toEqual(alone);
    const split = new HostHead(head, { gemm, maxBatch: 5 }).embed(compositions[3]!, NOW);
    const whole = host.embed(compositions[3]!, NOW);
    expect(split.map(bits)).toEqual(whole.map(bits));
  });

  test(`AETN_NATIVE_GEMM decides the default GEMM${why}`, () => {
    process.env.AETN_NATIVE_GEMM = '0';
    expect(new HostHead(head).gemmKind).toBe('js');
    delete process.env.AETN_NATIVE_GEMM;
    expect(new HostHead(head).gemmKind).toBe(native.ok ? 'native' : 'js');
  });
});

describe('bad input is refused as fillHeadRow refuses it', () => {
  let head: RealtimeHead;
  beforeAll(() => {
    head = randomHead({ layers: 1, dModel: 16, heads: 2, dFf: 16, maxEvents: 8, outDim: 8 }, 4);
  });
  afterAll(() => head.dispose());

  const ok: HeadEvent = { app: 1, type: 1, timestampMs: NOW - MIN };
  const bad: [string, HeadEvent][] = [
    ['app = numApps', { app: M, type: 1, timestampMs: NOW }],
    ['negative app', { app: -1, type: 1, timestampMs: NOW }],
    ['fractional app', { app: 1.5, type: 1, timestampMs: NOW }],
    ['type 0', { app: 1, type: 0 as 1, timestampMs: NOW }],
    ['type 3', { app: 1, type: 3 as 1, timestampMs: NOW }],
    ['NaN timestamp', { app: 1, type: 1, timestampMs: Number.NaN }],
  ];
  test.each(bad)('%s', (_what, e) => {
    const states = [{ events: [ok] }, { events: [ok, e] }];
    let want: unknown;
    try {
      encodeHeadBatch(states, NOW, head.cfg);
    } catch (err) {
      want = err;
    }
    expect(want).toBeInstanceOf(UserError);
    for (const gemm of GEMMS) {
      const host = new HostHead(head, { gemm });
      expect(() => host.embed(states, NOW)).toThrow(UserError);
      expect(() => host.embed(states, NOW)).toThrow((want as Error).message);
      // Still usable after a refused call.
      expect(host.embed([{ events: [ok] }], NOW)[0]!.length).toBe(8);
    }
  });

  test('only the newest maxEvents are checked, as in fillHeadRow', () => {
    const old: HeadEvent = { app: M + 5, type: 1, timestampMs: NOW - 1000 * MIN };
    const states = [{ events: [old, ...Array.from({ length: 8 }, (_, i) => ({ ...ok, app: i, timestampMs: NOW - i * MIN }))] }];
    const want = tfjsVectors(head, states, NOW);
    expect(maxAbsDiff(new HostHead(head).embed(states, NOW)[0]!, want[0]!)).toBeLessThan(2e-5);
  });
});

describe('loadHead serves the host forward unless AETN_HEAD_HOST=0', () => {
  let dir: string;
  let head: RealtimeHead;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aetn-host-head-'));
    head = randomHead({ layers: 1, dModel: 32, heads: 4, dFf: 64, outDim: 16 }, 6);
  });
  afterAll(async () => {
    head.dispose();
    delete process.env.AETN_HEAD_HOST;
    await rm(dir, { recursive: true, force: true });
  });

  test('both forwards, same vectors', async () => {
    const vocab = { hash: 'host-test', categories: ['c'], apps: Array.from({ length: M }, (_, i) => ({ index: i, appId: `a${i}`, category: 0, packages: [`p${i}`] })) };
    await saveHead(join(dir, 'rt'), head, { baseFeatureId: 'aetn-host', vocab });
    const rng = new Sfc32(2, 'served');
    const states = [...COUNTS, ...COUNTS].map((n) => user(rng, n));
    delete process.env.AETN_HEAD_HOST;
    const hostServed = await loadHead(join(dir, 'rt'), { backend: 'cpu' });
    process.env.AETN_HEAD_HOST = '0';
    const tfjsServed = await loadHead(join(dir, 'rt'), { backend: 'cpu' });
    try {
      expect(hostServed.forward).toBe('host');
      expect(tfjsServed.forward).toBe('tfjs');
      const a = hostServed.embed(states, NOW);
      const b = tfjsServed.embed(states, NOW);
      a.forEach((v, i) => expect(maxAbsDiff(v, b[i]!)).toBeLessThan(2e-5));
      // Few-event users take the host forward, the rest tfjs: each user's vector is still the
      // same bits alone as in the mixed batch, and the split really happens.
      states.forEach((st, i) => expect(hostServed.embed([st], NOW)[0]).toEqual(a[i]));
      const cut = hostMaxEvents(new HostHead(head).gemmKind);
      expect(cut).toBe(native.ok && process.env.AETN_NATIVE_GEMM !== '0' ? HOST_MAX_EVENTS : HOST_MAX_EVENTS_JS);
      const few = states.findIndex((st) => st.events.length > 0 && st.events.length <= cut);
      const many = states.findIndex((st) => st.events.length > cut);
      expect(few).toBeGreaterThanOrEqual(0);
      expect(many).toBeGreaterThanOrEqual(0);
      expect(a[many]).toEqual(b[many]); // tfjs for both
      expect(a[few]).toEqual(new HostHead(head).embed([states[few]!], NOW)[0]);
    } finally {
      hostServed.dispose();
      tfjsServed.dispose();
    }
  });
});
