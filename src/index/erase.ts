// Erasure of users (right to be forgotten) across the store and the HNSW indexes. The store part
// (vectors of every feature, realtime state, kept apps, installer lists, tombstone) commits in one
// LMDB transaction (EmbeddingStore.forget); then every feature's live index gets the users marked
// deleted and is published as a new generation, and the older generations, whose label files
// still name the users, are deleted. The points are gone for good at the next full build.
// A server that still has the old generation loaded filters forgotten users out of its answers
// (src/serve/backend.ts) until it reloads the new one at its next poll.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { EmbeddingStore, ForgetCounts } from '../store/store.js';
import { IndexHandle } from './handle.js';
import { existingGenerations, featureIndexDir, genName, readCurrent } from './layout.js';

export interface EraseResult extends ForgetCounts {
  /** Index points marked deleted, over all features. */
  indexPointsRemoved: number;
  /** Features whose index got a new generation. */
  indexesUpdated: string[];
}

/** Forgets users everywhere (see the file comment). Idempotent: forgetting twice removes nothing more. */
export async function eraseUsers(store: EmbeddingStore, userIds: readonly string[]): Promise<EraseResult> {
  const counts = await store.forget(userIds);
  const ids = [...new Set(userIds)];
  let indexPointsRemoved = 0;
  const indexesUpdated: string[] = [];
  for (const f of store.features()) {
    const fdir = featureIndexDir(store.dir, f.featureId);
    let cur: ReturnType<typeof readCurrent>;
    try {
      cur = readCurrent(fdir);
    } catch {
      cur = undefined; // a damaged pointer: nothing loadable holds the users; `aetn index` rebuilds
    }
    if (!cur) continue;
    const h = await IndexHandle.open(store.dir, f.featureId, { dim: f.dim });
    const n = h.remove(ids);
    if (n > 0) {
      const m = await h.save({ kind: 'update', storeAsOfMs: h.manifest.storeAsOfMs });
      indexPointsRemoved += n;
      indexesUpdated.push(f.featureId);
      dropOlderGenerations(fdir, m.generation);
    } else {
      // Not in the live generation, but an older one kept for readers may still name them.
      dropOlderGenerations(fdir, cur.gen);
    }
  }
  return { ...counts, indexPointsRemoved, indexesUpdated };
}

/** Unforgets users: later writes may store them again (nothing erased comes back by itself). */
export async function unforgetUsers(store: EmbeddingStore, userIds: readonly string[]): Promise<number> {
  return store.unforget(userIds);
}

/**
 * Deletes every generation older than `gen`. A reader that read CURRENT just before the swap fails
 * its reload and keeps serving what it has loaded (and retries at its next poll).
 */
function dropOlderGenerations(featureDir: string, gen: number): void {
  for (const g of existingGenerations(featureDir)) if (g < gen) rmSync(join(featureDir, genName(g)), { recursive: true, force: true });
}

/** Reads user ids, one per line (blank lines and `#` comments skipped), for `aetn store forget --users FILE`. */
export function parseUserList(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('#'));
}
