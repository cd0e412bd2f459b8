// Vocabulary building and its content hash. The hash covers exactly what gives a model row meaning
// (app id, its category, its merged packages, in index order, plus the category list), so any
// change in the kept apps or their categories changes it and a model trained on another refuses it.
import type { CatalogEntry, Vocabulary } from './types.js';
import { sha256Hex } from './hash.js';

export function vocabHash(apps: { appId: string; category: string; packages: string[] }[], categories: string[]): string {
  const canon = JSON.stringify({ v: 1, categories, apps: apps.map((a) => [a.appId, a.category, a.packages]) });
  return sha256Hex(canon).slice(0, 16);
}

/** Build the vocabulary from catalog entries whose `dropReason` is null; assigns their vocabIndex. */
export function buildVocabulary(catalog: CatalogEntry[]): Vocabulary {
  const kept = catalog.filter((c) => c.dropReason === null).sort((a, b) => (a.appId < b.appId ? -1 : a.appId > b.appId ? 1 : 0));
  const categories = [...new Set(kept.map((c) => c.category))].sort();
  const catIndex = new Map(categories.map((c, i) => [c, i]));
  for (const c of catalog) c.vocabIndex = -1;
  kept.forEach((c, i) => (c.vocabIndex = i));
  const hash = vocabHash(kept.map((c) => ({ appId: c.appId, category: c.category, packages: c.packages })), categories);
  return {
    hash,
    categories,
    apps: kept.map((c, i) => ({ index: i, appId: c.appId, category: catIndex.get(c.category)!, packages: [...c.packages] })),
  };
}

/** Recompute the hash of a loaded vocabulary (to detect a hand-edited vocab.json). */
export function checkVocabHash(v: Vocabulary): string {
  return vocabHash(v.apps.map((a) => ({ appId: a.appId, category: v.categories[a.category], packages: a.packages })), v.categories);
}
