// `aetn store`: inspect and manage the embedding store (features = model versions).
import type { Command } from 'commander';

interface StoreOpt {
  store: string;
  json?: boolean;
}

function fmtTime(ms: number | undefined): string {
  return ms ? new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z') : '-';
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((x, c) => x.padEnd(widths[c])).join('  ').trimEnd()).join('\n') + '\n';
}

export function register(program: Command): void {
  const cmd = program
    .command('store')
    .description('Inspect and manage the embedding store: list features (model versions), retire or purge one, show statistics.');

  cmd
    .command('init')
    .description(
      'Create the store the configuration names, if it is not there: with store.backend = cassandra the keyspace ' +
        '(store.cassandra.replicationFactor, only when it does not exist yet) and every table; with lmdb the store directory. Safe to re-run.',
    )
    .option('--config <file>', 'JSON configuration file (default: $AETN_CONFIG)')
    .option('--store <dir>', 'LMDB store directory (default: storeDir from the config)')
    .option('--store-backend <backend>', 'lmdb or cassandra (default: store.backend from the config)')
    .addHelpText('after', '\nExample:\n  AETN_CASSANDRA_CONTACT_POINTS=10.0.0.1,10.0.0.2 aetn store init --store-backend cassandra')
    .action(async (opts: { config?: string; store?: string; storeBackend?: string }) => {
      const { loadConfig } = await import('../../../src/config/config.js');
      const { openStore } = await import('../../../src/store/open.js');
      const cfg = loadConfig({ file: opts.config ?? null, overrides: { storeDir: opts.store, 'store.backend': opts.storeBackend } });
      const t0 = performance.now();
      const store = await openStore(cfg, { create: true });
      await store.close();
      const where = cfg.store.backend === 'cassandra' ? `keyspace ${cfg.store.cassandra.keyspace} at ${cfg.store.cassandra.contactPoints.join(', ')}` : cfg.storeDir;
      process.stdout.write(`store ready (${cfg.store.backend}): ${where} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    });

  cmd
    .command('list')
    .description('List features: id, namespace (long/short), variant, dim, users, created, status, base feature, live index generation.')
    .requiredOption('--store <dir>', 'embedding store directory')
    .option('--json', 'print JSON')
    .action(async (opts: StoreOpt) => {
      const { EmbeddingStore } = await import('../../../src/store/store.js');
      const { featureIndexDir, readCurrent } = await import('../../../src/index/layout.js');
      const store = EmbeddingStore.open(opts.store, { create: false });
      try {
        const feats = store.features();
        const defaults = new Set([store.defaultFeature('long')?.featureId, store.defaultFeature('short')?.featureId]);
        const indexOf = (f: string) => {
          try {
            return readCurrent(featureIndexDir(opts.store, f))?.gen;
          } catch {
            return -1; // damaged pointer
          }
        };
        if (opts.json) {
          process.stdout.write(JSON.stringify(feats.map((f) => ({ ...f, default: defaults.has(f.featureId), indexGeneration: indexOf(f.featureId) ?? null })), null, 2) + '\n');
          return;
        }
        if (feats.length === 0) {
          process.stdout.write(`no features in ${opts.store}\n`);
          return;
        }
        const rows = [['FEATURE', 'NS', 'VARIANT', 'DIM', 'USERS', 'CREATED', 'STATUS', 'BASE', 'INDEX']];
        for (const f of feats) {
          const status = f.purgedAtMs ? 'purged' : f.retired ? 'retired' : defaults.has(f.featureId) ? 'active*' : 'active';
          const gen = indexOf(f.featureId);
          rows.push([f.featureId, f.namespace, f.variant, String(f.dim), String(f.count), fmtTime(f.createdAtMs), status, f.baseFeatureId ?? '-', gen === undefined ? '-' : gen < 0 ? 'damaged' : `gen ${gen}`]);
        }
        process.stdout.write(table(rows) + '* = default for its namespace (newest active)\n');
      } finally {
        await store.close();
      }
    });

  cmd
    .command('retire')
    .description('Retire a feature: it stops being served and accepts no writes; its vectors stay until `aetn store purge`.')
    .argument('<feature>', 'feature id')
    .requiredOption('--store <dir>', 'embedding store directory')
    .action(async (feature: string, opts: StoreOpt) => {
      const { EmbeddingStore } = await import('../../../src/store/store.js');
      const store = EmbeddingStore.open(opts.store, { create: false });
      try {
        const f = await store.retire(feature);
        const next = store.defaultFeature(f.namespace);
        process.stdout.write(`retired ${f.featureId} (${f.count} users kept until purge); default ${f.namespace} feature is now ${next?.featureId ?? '(none)'}\n`);
      } finally {
        await store.close();
      }
    });

  cmd
    .command('purge')
    .description('Delete the vectors and index of a retired feature (the id stays registered so it is never reused).')
    .argument('<feature>', 'feature id')
    .requiredOption('--store <dir>', 'embedding store directory')
    .action(async (feature: string, opts: StoreOpt) => {
      const { EmbeddingStore } = await import('../../../src/store/store.js');
      const { removeIndex } = await import('../../../src/index/build.js');
      const store = EmbeddingStore.open(opts.store, { create: false });
      try {
        const before = store.count(feature);
        await store.purge(feature);
        removeIndex(opts.store, feature);
        process.stdout.write(`purged ${feature}: ${before} vectors and its index deleted\n`);
      } finally {
        await store.close();
      }
    });

  cmd
    .command('forget')
    .description(
      'Erase users (right to be forgotten): vectors of every feature, index points (marked deleted; gone after the next build), installer lists, kept apps, realtime state; a tombstone keeps later embeds and events from bringing them back. --unforget removes the tombstones.',
    )
    .requiredOption('--store <dir>', 'embedding store directory')
    .requiredOption('--users <file>', 'user ids, one per line (blank lines and # comments skipped)')
    .option('--unforget', 'remove the tombstones instead (nothing erased comes back by itself)')
    .option('--json', 'print JSON')
    .action(async (opts: StoreOpt & { users: string; unforget?: boolean }) => {
      const { readFileSync } = await import('node:fs');
      const { UserError } = await import('../../../src/util/errors.js');
      const { EmbeddingStore } = await import('../../../src/store/store.js');
      const { eraseUsers, unforgetUsers, parseUserList } = await import('../../../src/index/erase.js');
      let text: string;
      try {
        text = readFileSync(opts.users, 'utf8');
      } catch (err) {
        throw new UserError(`cannot read --users ${opts.users}: ${(err as Error).message}`);
      }
      const ids = parseUserList(text);
      if (ids.length === 0) throw new UserError(`--users ${opts.users} holds no user ids (one per line)`);
      const store = EmbeddingStore.open(opts.store, { create: false });
      try {
        if (opts.unforget) {
          const n = await unforgetUsers(store, ids);
          process.stdout.write(opts.json ? JSON.stringify({ users: new Set(ids).size, unforgotten: n }) + '\n' : `unforgot ${n} of ${new Set(ids).size} users: they may be written again\n`);
          return;
        }
        const r = await eraseUsers(store, ids);
        if (opts.json) {
          process.stdout.write(JSON.stringify(r, null, 2) + '\n');
          return;
        }
        process.stdout.write(
          `forgot ${r.users} users (${r.newlyForgotten} new): ${r.vectorsRemoved} vectors, ${r.indexPointsRemoved} index points (${r.indexesUpdated.length} indexes), ` +
            `${r.installerEntriesRemoved} installer entries, ${r.keptAppListsRemoved} kept-app lists, ${r.realtimeStatesRemoved} realtime states removed\n`,
        );
      } finally {
        await store.close();
      }
    });

  cmd
    .command('stats')
    .description('Store statistics: file size, LMDB map size and pages, readers, features, vectors, run markers, app installer lists.')
    .requiredOption('--store <dir>', 'embedding store directory')
    .option('--json', 'print JSON')
    .action(async (opts: StoreOpt) => {
      const { EmbeddingStore } = await import('../../../src/store/store.js');
      const store = EmbeddingStore.open(opts.store, { create: false });
      try {
        const s = store.stats();
        if (opts.json) {
          process.stdout.write(JSON.stringify(s, null, 2) + '\n');
          return;
        }
        process.stdout.write(
          table([
            ['store', s.dir],
            ['file', `${(s.fileBytes / 1e6).toFixed(1)} MB (map ${(s.mapBytes / 1e6).toFixed(1)} MB, ${s.usedPages} pages of ${s.pageSize} B)`],
            ['readers', String(s.readers)],
            ['features', String(s.features)],
            ['vectors', String(s.vectors)],
            ['run markers', String(s.runs)],
            ['installer lists', String(s.appKeys)],
          ]),
        );
      } finally {
        await store.close();
      }
    });
}
