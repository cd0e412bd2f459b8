// Loads the hnswlib binding. AETN_HNSWLIB_ADDON may point at another build of the same addon
// (e.g. one compiled with -march=native on the serving host); worker threads inherit it.
import { createRequire } from 'node:module';
import type * as Hnswlib from 'hnswlib-node';

export type HnswlibModule = typeof Hnswlib;
export type HnswIndex = Hnswlib.HierarchicalNSW;

const require = createRequire(import.meta.url);
let loaded: HnswlibModule | undefined;

export function hnswlib(): HnswlibModule {
  if (!loaded) {
    const override = process.env.AETN_HNSWLIB_ADDON;
    loaded = (override ? require(override) : require('hnswlib-node')) as HnswlibModule;
  }
  return loaded;
}
