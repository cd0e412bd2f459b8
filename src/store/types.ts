// The embedding store contract (implemented on LMDB in this folder). The store holds vectors, not
// models: a feature id names one trained model's vector space; vectors of two feature ids never mix.

export type Namespace = 'long' | 'short';

export interface FeatureInfo {
  featureId: string;
  namespace: Namespace; // 'long' = AETN batch vectors, 'short' = realtime head vectors
  dim: number;
  variant: string; // model variant, e.g. 'aetn', 'dae', 'realtime'
  createdAtMs: number;
  retired: boolean;
  count: number; // users stored
  /** For short-term features: the long-term feature whose app matrix the head uses. */
  baseFeatureId?: string;
  meta?: Record<string, unknown>;
  /** Set when the feature was retired (its vectors stay readable by `purge` only). */
  retiredAtMs?: number;
  /** Set when the vectors of a retired feature were deleted; the id is never reused. */
  purgedAtMs?: number;
}

export interface StoredVector {
  featureId: string;
  vector: Float32Array;
  updatedAtMs: number;
}

/** What `registerFeature` needs; the store fills in the rest. */
export interface NewFeature {
  featureId: string;
  namespace: Namespace;
  dim: number;
  variant: string;
  createdAtMs?: number;
  baseFeatureId?: string;
  meta?: Record<string, unknown>;
}

export interface VectorEntry {
  userId: string;
  vector: Float32Array;
}

/** Error codes chosen to map 1:1 onto gRPC status codes. */
export type StoreErrorCode = 'NOT_FOUND' | 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION';

/** Progress of a resumable job (e.g. an embed run): any JSON-like value the job chooses. */
export type RunState = Record<string, unknown>;
