// Evaluation metrics. Pure functions over plain arrays so the tests can check them on hand-made
// inputs with answers worked out by hand.

/**
 * ROC AUC = P(score of a random positive > score of a random negative), ties counting one half.
 * Computed by the rank-sum (Mann-Whitney U) formula with average ranks for tied scores, which is
 * exactly the tie-aware definition. Returns NaN when one class is absent (AUC is undefined there).
 */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const n = scores.length;
  if (labels.length !== n) throw new RangeError(`rocAuc: ${n} scores but ${labels.length} labels`);
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    if (Number.isNaN(scores[i])) throw new RangeError(`rocAuc: score ${i} is NaN`);
    order[i] = i;
  }
  order.sort((a, b) => scores[a] - scores[b]);
  let pos = 0;
  let rankSumPos = 0;
  let i = 0;
  while (i < n) {
    let j = i + 1;
    while (j < n && scores[order[j]] === scores[order[i]]) j++;
    // Ranks i+1..j (1-based) share their mean.
    const avgRank = (i + 1 + j) / 2;
    for (let k = i; k < j; k++) {
      if (labels[order[k]] > 0) {
        pos++;
        rankSumPos += avgRank;
      }
    }
    i = j;
  }
  const neg = n - pos;
  if (pos === 0 || neg === 0) return Number.NaN;
  return (rankSumPos - (pos * (pos + 1)) / 2) / (pos * neg);
}

/** The hits of a ranked list against a hidden set, looking at the first `n` entries. */
function hitsAt<T>(ranked: readonly T[], hidden: ReadonlySet<T>, n: number): number {
  const m = Math.min(n, ranked.length);
  let hits = 0;
  for (let i = 0; i < m; i++) if (hidden.has(ranked[i])) hits++;
  return hits;
}

/** Share of the hidden set found in the first `n` ranked entries. NaN for an empty hidden set. */
export function recallAtN<T>(ranked: readonly T[], hidden: ReadonlySet<T>, n: number): number {
  if (hidden.size === 0) return Number.NaN;
  return hitsAt(ranked, hidden, n) / hidden.size;
}

/**
 * Share of the first `n` ranked entries that are hidden positives. An audience shorter than `n` is
 * judged on what it returned (a method that returns fewer users is not credited with misses it
 * never made, but its recall shows the shortfall). NaN when nothing was returned.
 */
export function precisionAtN<T>(ranked: readonly T[], hidden: ReadonlySet<T>, n: number): number {
  const m = Math.min(n, ranked.length);
  if (m === 0) return Number.NaN;
  return hitsAt(ranked, hidden, n) / m;
}

/** Size of the intersection of two sets given as arrays (duplicates ignored). */
function intersectionSize(a: ArrayLike<number>, b: ArrayLike<number>): { inter: number; sa: number; sb: number } {
  const A = new Set<number>();
  for (let i = 0; i < a.length; i++) A.add(a[i]);
  const B = new Set<number>();
  for (let i = 0; i < b.length; i++) B.add(b[i]);
  let inter = 0;
  for (const x of B) if (A.has(x)) inter++;
  return { inter, sa: A.size, sb: B.size };
}

/**
 * App overlap rate between two users' app sets (paper §5.5: retention, installs or uninstalls of a
 * user and of their nearest neighbour): |A ∩ B| / |A ∪ B| (Jaccard). Symmetric, so it does not
 * matter which user is the query. NaN when both sets are empty (no evidence either way).
 */
export function overlapRate(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const { inter, sa, sb } = intersectionSize(a, b);
  const union = sa + sb - inter;
  return union === 0 ? Number.NaN : inter / union;
}

/** |A ∩ B| / |A|: the share of the query user's apps that the neighbour also has. NaN for empty A. */
export function coverageRate(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const { inter, sa } = intersectionSize(a, b);
  return sa === 0 ? Number.NaN : inter / sa;
}

export interface Spread {
  mean: number;
  /** Sample standard deviation (n-1); 0 for a single run. */
  std: number;
  min: number;
  max: number;
  n: number;
}

/** Mean and spread over runs, ignoring NaN entries (a run where a metric was undefined). */
export function meanStd(values: readonly number[]): Spread {
  const v = values.filter((x) => !Number.isNaN(x));
  const n = v.length;
  if (n === 0) return { mean: Number.NaN, std: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 };
  let s = 0;
  for (const x of v) s += x;
  const mean = s / n;
  let ss = 0;
  for (const x of v) ss += (x - mean) * (x - mean);
  return { mean, std: n > 1 ? Math.sqrt(ss / (n - 1)) : 0, min: Math.min(...v), max: Math.max(...v), n };
}

/** Mean of the non-NaN entries (NaN when there are none). */
export function nanMean(values: readonly number[]): number {
  return meanStd(values).mean;
}
