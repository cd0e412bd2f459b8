// Both writers of short-term vectors (the Kafka consumer and EventService's direct sink) register
// the realtime head's feature the same way.
import type { Logger } from 'pino';
import type { EmbeddingStore } from '../src/store/store.js';
import type { Store } from '../src/store/backend.js';

export function registerHeadFeature(store: EmbeddingStore, head: { featureId: string; baseFeatureId: string; dim: number }, log: Logger): void {
  const base = store.getFeature(head.baseFeatureId);
  // The short-term vectors are usable without long-term ones; the link is recorded either way.
  if (!base) log.warn({ baseFeatureId: head.baseFeatureId }, 'the AETN feature of this head is not in the store yet (run the batch embed); registering the short-term feature without the link');
  store.registerFeature({
    featureId: head.featureId,
    namespace: 'short',
    dim: head.dim,
    variant: 'realtime',
    ...(base ? { baseFeatureId: head.baseFeatureId } : {}),
    meta: { baseFeatureId: head.baseFeatureId },
  });
}

/** The same for any store backend (the Cassandra store answers asynchronously). */
export async function registerHeadFeatureIn(store: Store, head: { featureId: string; baseFeatureId: string; dim: number }, log: Logger): Promise<void> {
  const base = await store.getFeature(head.baseFeatureId);
  if (!base) log.warn({ baseFeatureId: head.baseFeatureId }, 'the AETN feature of this head is not in the store yet (run the batch embed); registering the short-term feature without the link');
  await store.registerFeature({
    featureId: head.featureId,
    namespace: 'short',
    dim: head.dim,
    variant: 'realtime',
    ...(base ? { baseFeatureId: head.baseFeatureId } : {}),
    meta: { baseFeatureId: head.baseFeatureId },
  });
}
