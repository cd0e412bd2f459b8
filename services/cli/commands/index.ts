// `aetn index`: builds (or incrementally updates) the HNSW index of one feature from the store.
import type { Command } from 'commander';
import { UserError } from '../../../src/util/errors.js';

function int(name: string, min: number, max: number) {
  return (v: string): number => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < min || x > max) throw new UserError(`--${name} must be an integer in ${min}..${max}, got '${v}'`);
    return x;
  };
}

interface Opts {
  store: string;
  feature?: string;
  m?: number;
  efConstruction?: number;
  efSearch?: number;
  update?: boolean;
  check?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('index')
    .description(
      'Build the HNSW (cosine) neighbour index of a feature from the embedding store, as a new generation that replaces ' +
        'the live one atomically (serving processes pick it up on reload). --update instead applies only what changed in ' +
        'the store since the index was written (re-embedded, new and deleted users); a missing or damaged index is rebuilt. ' +
        'Defaults (M 16, efConstruction 200, efSearch 96 below 500k users, 192 from 500k on) were chosen with bench/index-hnsw.ts: see docs/parts/store-index.md.',
    )
    .requiredOption('--store <dir>', 'embedding store directory')
    .option('--feature <id>', 'feature id (default: the newest non-retired long-term feature)')
    .option('--m <n>', 'graph degree M (default 16)', int('m', 2, 128))
    .option('--ef-construction <n>', 'beam width while building (default 200)', int('ef-construction', 1, 10000))
    .option('--ef-search <n>', 'default beam width of searches, stored with the index (default 96 below 500k users, 192 from 500k on)', int('ef-search', 1, 10000))
    .option('--update', 'incremental: upsert changed users and remove deleted ones instead of rebuilding')
    .option('--check', 'only load and verify the live index (checksums, feature id, dimension); build nothing')
    .option('--json', 'print the resulting manifest as JSON')
    .addHelpText('after', '\nExamples:\n  aetn index --store data/store\n  aetn index --store data/store --feature aetn-20240101 --ef-search 64\n  aetn index --store data/store --update')
    .action(async (opts: Opts) => {
      const { EmbeddingStore } = await import('../../../src/store/store.js');
      const { buildIndex, updateIndex } = await import('../../../src/index/build.js');
      const { IndexHandle } = await import('../../../src/index/handle.js');
      const store = EmbeddingStore.open(opts.store, { create: false });
      try {
        const featureId = opts.feature ?? store.defaultFeature('long')?.featureId;
        if (!featureId) throw new UserError(`store ${opts.store} has no active long-term feature; pass --feature`);
        const feature = store.getFeature(featureId);
        if (!feature) throw new UserError(`unknown feature id ${featureId}; see \`aetn store list --store ${opts.store}\``);
        const params = { m: opts.m, efConstruction: opts.efConstruction, efSearch: opts.efSearch };
        const t0 = performance.now();
        let manifest;
        let what: string;
        if (opts.check) {
          const h = await IndexHandle.open(opts.store, featureId, { dim: feature.dim });
          manifest = h.manifest;
          what = `verified (store has ${store.count(featureId)} users)`;
        } else if (opts.update) {
          const r = await updateIndex(store, featureId, params);
          manifest = r.manifest;
          what = r.rebuilt ? `rebuilt (${r.reason})` : `updated: ${r.upserted} upserted, ${r.removed} removed`;
        } else {
          manifest = await buildIndex(store, featureId, params);
          what = 'built';
        }
        const secs = (performance.now() - t0) / 1000;
        if (opts.json) {
          process.stdout.write(JSON.stringify(manifest, null, 2) + '\n');
        } else {
          process.stdout.write(
            `index ${featureId} ${what} in ${secs.toFixed(1)} s: generation ${manifest.generation}, ${manifest.count} users, ` +
              `dim ${manifest.dim}, M ${manifest.m}, efConstruction ${manifest.efConstruction}, efSearch ${manifest.efSearch}, ` +
              `${(manifest.files['index.hnsw'].bytes / 1e6).toFixed(1)} MB\n`,
          );
        }
      } finally {
        await store.close();
      }
    });
}
