// The classical *sequence* baseline of Test #1: what a user installed and uninstalled in the last
// few weeks, counted per app category. It sees only the dated sequences (never the retained set),
// so it shows whether recent behaviour predicts next-week adoption at all, independent of any model.
import { UserError } from '../util/errors.js';

export interface DatedSequences {
  installs: Int32Array[];
  installDates: Int32Array[];
  uninstalls: Int32Array[];
  uninstallDates: Int32Array[];
}

/**
 * Row-major [n, 2C] vectors: log(1 + installs of category c in weeks 0..weeks-1 before the reference
 * date) in the first C columns, the same for uninstalls in the next C. `categoryOfApp[i]` is the
 * category index (0..numCategories-1) of vocabulary app i.
 */
export function recentCategoryCounts(seq: DatedSequences, categoryOfApp: Int32Array, numCategories: number, weeks: number): Float32Array {
  if (!Number.isInteger(weeks) || weeks < 1) throw new UserError(`recent weeks must be an integer >= 1, got ${weeks}`);
  if (!Number.isInteger(numCategories) || numCategories < 1) throw new UserError(`the vocabulary has no categories (${numCategories})`);
  const n = seq.installs.length;
  for (const k of ['installDates', 'uninstalls', 'uninstallDates'] as const) {
    if (seq[k].length !== n) throw new Error(`recentCategoryCounts: ${k} holds ${seq[k].length} users, installs ${n}`);
  }
  const d = 2 * numCategories;
  const V = new Float32Array(n * d);
  const add = (u: number, apps: Int32Array, dates: Int32Array, offset: number) => {
    if (apps.length !== dates.length) throw new Error(`recentCategoryCounts: user row ${u} has ${apps.length} events and ${dates.length} dates`);
    for (let i = 0; i < apps.length; i++) {
      if (dates[i] >= weeks) continue;
      const c = categoryOfApp[apps[i]];
      if (c === undefined || c < 0 || c >= numCategories) throw new Error(`recentCategoryCounts: app ${apps[i]} has no category`);
      V[u * d + offset + c] += 1;
    }
  };
  for (let u = 0; u < n; u++) {
    add(u, seq.installs[u], seq.installDates[u], 0);
    add(u, seq.uninstalls[u], seq.uninstallDates[u], numCategories);
  }
  for (let i = 0; i < V.length; i++) if (V[i] > 0) V[i] = Math.log1p(V[i]);
  return V;
}

/** Row-major concatenation [A | B] of two aligned sets of vectors. */
export function concatRows(A: Float32Array, da: number, B: Float32Array, db: number): Float32Array {
  const n = A.length / da;
  if (B.length / db !== n) throw new Error(`concatRows: ${n} rows against ${B.length / db}`);
  const d = da + db;
  const C = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    C.set(A.subarray(i * da, (i + 1) * da), i * d);
    C.set(B.subarray(i * db, (i + 1) * db), i * d + da);
  }
  return C;
}
