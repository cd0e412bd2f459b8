// Loads the hnswlib binding. runtime.hnswlibAddon (AETN_HNSWLIB_ADDON) may point at another build of the same addon
// (e.g. one compiled with -march=native on the serving host); worker threads inherit it.
import { createRequire } from 'node:module';
import type * as Hnswlib from 'hnswlib-node';
import { runtimeSettings } from '../config/config.js';

export type HnswlibModule = typeof Hnswlib;
export type HnswIndex = Hnswlib.HierarchicalNSW;

const require = createRequire(import.meta.url);
let loaded: HnswlibModule | undefined;

export function hnswlib(): HnswlibModule {
  if (!loaded) {
    const override = runtimeSettings().hnswlibAddon;
    loaded = (override ? require(override) : require('hnswlib-node')) as HnswlibModule;
  }
  return loaded;
}
