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
  allowUnfinished?: boolean;
  store?: string;
  storeBackend?: string;
  config?: string;
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
    .option('--store <dir>', 'embedding store directory (the lmdb backend)')
    .option('--store-backend <backend>', 'lmdb or cassandra (default store.backend from the config): with cassandra the vectors are read from the shared keyspace and the index is written there as a new generation, which serving replicas pick up')
    .option('--config <file>', 'JSON configuration file for store.* (default: $AETN_CONFIG)')
    .option('--feature <id>', 'feature id (default: the newest non-retired long-term feature)')
    .option('--m <n>', 'graph degree M (default 16)', int('m', 2, 128))
    .option('--ef-construction <n>', 'beam width while building (default 200)', int('ef-construction', 1, 10000))
    .option('--ef-search <n>', 'default beam width of searches, stored with the index (default 96 below 500k users, 192 from 500k on)', int('ef-search', 1, 10000))
    .option('--allow-unfinished', 'cassandra backend: build even while an embed run of the feature (a --shard i/n) has not finished')
    .option('--update', 'incremental: upsert changed users and remove deleted ones instead of rebuilding')
    .option('--check', 'only load and verify the live index (checksums, feature id, dimension); build nothing')
    .option('--json', 'print the resulting manifest as JSON')
    .addHelpText('after', '\nExamples:\n  aetn index --store data/store\n  aetn index --store-backend cassandra --feature aetn-20240101\n  aetn index --store data/store --feature aetn-20240101 --ef-search 64\n  aetn index --store data/store --update')
    .action(async (opts: Opts) => {
      const { loadConfig } = await import('../../../src/config/config.js');
      const cfg = loadConfig({ file: opts.config ?? null, overrides: { 'store.backend': opts.storeBackend } });
      if (cfg.store.backend === 'cassandra') {
        if (opts.store !== undefined) throw new UserError('--store names an LMDB directory; with --store-backend cassandra the store is the keyspace of store.cassandra.* (drop --store)');
        if (opts.update) throw new UserError('--update is for the LMDB store; with --store-backend cassandra every build is a full one under a new generation');
        await sharedIndex(cfg.store.cassandra, opts);
        return;
      }
      if (opts.store === undefined) throw new UserError('--store <dir> is required (or --store-backend cassandra for the shared store)');
      const storeDir = opts.store;
      const { EmbeddingStore } = await import('../../../src/store/store.js');
      const { buildIndex, updateIndex } = await import('../../../src/index/build.js');
      const { IndexHandle } = await import('../../../src/index/handle.js');
      const store = EmbeddingStore.open(storeDir, { create: false });
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

/** `aetn index --store-backend cassandra`: build from the shared store, publish a new generation there (or --check the live one). */
async function sharedIndex(cass: import('../../../src/store/cassandra.js').CassandraOptions, opts: Opts): Promise<void> {
  const { CassandraStore } = await import('../../../src/store/cassandra.js');
  const { buildSharedIndex, materializeGeneration, newIndexCacheDir } = await import('../../../src/index/shared.js');
  const { IndexHandle } = await import('../../../src/index/handle.js');
  const { rmSync } = await import('node:fs');
  const store = await CassandraStore.open(cass, { create: false });
  try {
    const featureId = opts.feature ?? (await store.defaultFeature('long'))?.featureId;
    if (!featureId) throw new UserError(`keyspace ${cass.keyspace} has no active long-term feature; pass --feature`);
    const feature = await store.getFeature(featureId);
    if (!feature) throw new UserError(`unknown feature id ${featureId} in keyspace ${cass.keyspace}`);
    const t0 = performance.now();
    let manifest;
    let what: string;
    if (opts.check) {
      const dir = newIndexCacheDir();
      try {
        const gen = await materializeGeneration(store, dir, featureId);
        if (gen === undefined) throw new UserError(`feature ${featureId} has no index in keyspace ${cass.keyspace}; build it with \`aetn index --store-backend cassandra --feature ${featureId}\``);
        manifest = (await IndexHandle.open(dir, featureId, { dim: feature.dim })).manifest;
        what = 'verified (read from the shared store)';
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    } else {
      // The shards of an embed job run on several machines: an index built before all of them
      // finished would miss their users. Their run markers in the store say.
      const open = (await store.runStates(`embed:${featureId}:`)).filter((r) => r.state.done !== true);
      if (open.length > 0 && !opts.allowUnfinished) {
        const list = open.map((r) => `${r.runId} (${String(r.state.users ?? 0)} users so far)`).join(', ');
        throw new UserError(`${open.length} embed run(s) of ${featureId} have not finished: ${list}; finish them (re-run the same aetn embed command) or pass --allow-unfinished`);
      }
      const r = await buildSharedIndex(store, featureId, { m: opts.m, efConstruction: opts.efConstruction, efSearch: opts.efSearch });
      manifest = r.manifest;
      what = `built from the shared store (read ${r.readSeconds.toFixed(1)} s, build ${r.buildSeconds.toFixed(1)} s, ${r.chunks} chunks written in ${r.writeSeconds.toFixed(1)} s)${r.replaced !== undefined ? `, replacing generation ${r.replaced}` : ''}`;
    }
    const secs = (performance.now() - t0) / 1000;
    if (opts.json) process.stdout.write(JSON.stringify(manifest, null, 2) + '\n');
    else
      process.stdout.write(
        `index ${featureId} ${what} in ${secs.toFixed(1)} s: generation ${manifest.generation}, ${manifest.count} users, ` +
          `dim ${manifest.dim}, M ${manifest.m}, efConstruction ${manifest.efConstruction}, efSearch ${manifest.efSearch}, ` +
          `${(manifest.files['index.hnsw'].bytes / 1e6).toFixed(1)} MB\n`,
      );
  } finally {
    await store.close();
  }
}
