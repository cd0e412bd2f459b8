// A tiny planted world for evaluation tests: users have one latent topic that drives their apps, the
// niche installs and the look-alike adoption; a "good" embedding reveals the topic, a random one not.
import type { EvalTasks, EvalUsers } from '../../src/eval/evaluate.js';
import { Rng } from '../../src/util/random.js';

export interface TinyWorld {
  users: EvalUsers;
  tasks: EvalTasks;
  topic: Int32Array;
  numApps: number;
  topics: number;
}

export function tinyWorld(n: number, seed: number, topics = 6, appsPerTopic = 20): TinyWorld {
  const rng = new Rng(seed);
  const numApps = topics * appsPerTopic;
  const topic = new Int32Array(n);
  const users: EvalUsers = { ids: [], retention: [], installs: [], uninstalls: [] };
  const nicheA = new Uint8Array(n);
  const nicheB = new Uint8Array(n);
  const target = new Uint8Array(n);
  const ownApp = (t: number) => t * appsPerTopic + rng.int(appsPerTopic);
  for (let u = 0; u < n; u++) {
    const t = rng.int(topics);
    topic[u] = t;
    users.ids.push(`u${u}`);
    const ret = new Set<number>();
    while (ret.size < 6) ret.add(ownApp(t));
    while (ret.size < 8) ret.add(rng.int(numApps));
    users.retention.push(Int32Array.from(ret).sort());
    users.installs.push(Int32Array.from({ length: 4 }, () => ownApp(t)));
    users.uninstalls.push(Int32Array.from({ length: 2 }, () => rng.int(numApps)));
    nicheA[u] = rng.next() < (t === 0 ? 0.3 : 0.01) ? 1 : 0;
    nicheB[u] = rng.next() < (t === 1 ? 0.3 : 0.01) ? 1 : 0;
    target[u] = rng.next() < (t === 2 ? 0.5 : 0.02) ? 1 : 0;
  }
  return {
    users,
    tasks: { niche: [{ name: 'niche-a', labels: nicheA }, { name: 'niche-b', labels: nicheB }], lookalike: { name: 'target-app', labels: target } },
    topic,
    numApps,
    topics,
  };
}

/** Vectors that reveal each user's topic (one-hot, plus noise of the given size). */
export function topicVectors(w: TinyWorld, dim: number, noise: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const n = w.users.ids.length;
  const V = new Float32Array(n * dim);
  for (let u = 0; u < n; u++) {
    for (let j = 0; j < dim; j++) V[u * dim + j] = noise * rng.normal();
    V[u * dim + (w.topic[u] % dim)] += 1;
  }
  return V;
}

export function randomVectors(n: number, dim: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n * dim }, () => rng.normal());
}
