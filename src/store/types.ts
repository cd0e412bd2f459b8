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
}

export interface StoredVector {
  featureId: string;
  vector: Float32Array;
  updatedAtMs: number;
}
