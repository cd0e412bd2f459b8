// Opens the store a process is configured for (`store.backend`): the LMDB directory of this host,
// or the shared Cassandra keyspace. The options mirror the config schema's `storeDir` and
// `store.*` keys (src/config), passed in by the services so that this folder stays below config.
import { EmbeddingStore } from './store.js';
import { CassandraStore, type CassandraOptions } from './cassandra.js';
import type { Store, StoreBackendKind } from './backend.js';

export interface StoreSelection {
  storeDir: string;
  store: { backend: StoreBackendKind; cassandra: CassandraOptions };
}

export async function openStore(sel: StoreSelection, opts: { create?: boolean } = {}): Promise<Store> {
  if (sel.store.backend === 'cassandra') return CassandraStore.open(sel.store.cassandra, opts);
  return EmbeddingStore.open(sel.storeDir, opts);
}
