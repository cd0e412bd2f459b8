// `aetn embed`: the batch job that writes long-term vectors of a trained model into the store.
import { InvalidArgumentError, type Command } from 'commander';
import { positiveInt as int } from '../flags.js';


export function register(program: Command): void {
  program
    .command('embed')
    .description(
      'Embed all users of a prepared dataset (or only those active since a date) with a trained checkpoint and write ' +
        "the long-term vectors to the store under the checkpoint's feature id. Inference only; streams shards; both " +
        'cores; crash-safe and resumable (re-run the same command). A new model writes a new feature id beside the old.',
    )
    .option('--method <name>', 'model: vectors of a trained checkpoint (--model); svd: classical vectors without a model, TF-IDF of the kept apps -> randomized truncated SVD -> unit rows (feature variant tfidf-svd, marked classical)', 'model')
    .option('--model <dir>', 'trained model directory (aetn train --out); required with --method model')
    .option('--dim <n>', '--method svd: dimensions of the vectors (default 64)', int('--dim'))
    .option('--seed <n>', '--method svd: seed of the randomized SVD (default 1; same data and seed: identical vectors)', (v: string) => {
      const x = Number(v);
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(x)) throw new InvalidArgumentError(`--seed must be a non-negative integer, got '${v}'`);
      return x;
    })
    .requiredOption('--data <dir>', 'prepared dataset (aetn prepare --out)')
    .option('--store <dir>', 'embedding store directory (created if missing); required with the lmdb backend')
    .option('--store-backend <backend>', 'lmdb (the store directory) or cassandra (the shared keyspace of store.cassandra.*, the cluster mode); default store.backend from the config')
    .option('--config <file>', 'JSON configuration file for store.* (default: $AETN_CONFIG)')
    .option('--active-since <YYYY-MM-DD>', 'only users with an install/uninstall on or after this day (feature updating)')
    .option('--backend <name>', 'wasm | webgpu | tensorflow | cpu (default: $AETN_BACKEND, else tensorflow when installed, else wasm)')
    .option('--workers <n>', 'worker threads (default: 1 on the native OpenBLAS GEMM, which uses every core itself; else number of cores)', int('--workers'))
    .option('--batch-size <n>', 'users per model call and store transaction (default 1000; on webgpu four device calls, at least 1000)', int('--batch-size'))
    .option('--gpu-memory-budget <MiB>', 'device memory for embedding on webgpu; sets the users per device call (default: runtime.gpuMemoryBudgetMiB / $AETN_GPU_MEMORY_BUDGET_MIB, else 4096)', int('--gpu-memory-budget'))
    .option('--overlap', 'read the next batch and commit the last one while this one embeds (default on webgpu: runtime.embedOverlap / $AETN_EMBED_OVERLAP, auto)')
    .option('--no-overlap', 'one stage after the other')
    .option('--no-installers', 'do not rewrite the "installers of app X" lists')
    .option('--restart', "ignore an unfinished run's progress and start over")
    .option('--max-users <n>', 'stop after N users (the run stays resumable)', int('--max-users'))
    .option('--shard <i/n>', 'embed only user shard i of n (users by hash of the user id), so n machines split one run; each shard resumes on its own and their union equals the unsharded run')
    .option('--json', 'print the result as JSON on stdout')
    .action(async (o: { method: string; model?: string; dim?: number; seed?: number; data: string; store?: string; storeBackend?: string; config?: string; activeSince?: string; backend?: string; workers?: number; batchSize?: number; gpuMemoryBudget?: number; overlap: boolean; installers: boolean; restart?: boolean; maxUsers?: number; shard?: string; json?: boolean }, cmd: Command) => {
      const { UserError } = await import('../../../src/util/errors.js');
      if (o.method !== 'model' && o.method !== 'svd') throw new UserError(`--method must be model or svd, got '${o.method}'`);
      const { runEmbedJob, runSvdEmbedJob, parseShard } = await import('../../embed.js');
      const { loadConfig } = await import('../../../src/config/config.js');
      const cfg = loadConfig({ file: o.config ?? null, overrides: { 'store.backend': o.storeBackend } });
      const cassandra = cfg.store.backend === 'cassandra' ? cfg.store.cassandra : undefined;
      if (!cassandra && o.store === undefined) throw new UserError('--store <dir> is required (or --store-backend cassandra for the shared store)');
      if (cassandra && o.store !== undefined) throw new UserError('--store names an LMDB directory; with --store-backend cassandra the store is the keyspace of store.cassandra.* (drop --store)');
      const storeDir = o.store ?? cfg.storeDir;
      if (o.method === 'svd') {
        const bad = (['model', 'activeSince', 'backend', 'workers', 'restart', 'maxUsers', 'shard'] as const).filter((k) => o[k] !== undefined);
        if (bad.length > 0) {
          const flag = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
          throw new UserError(`--method svd takes no ${bad.map(flag).join(', ')}: it fits on the whole dataset, without a model (re-run it on new data)`);
        }
        const r = await runSvdEmbedJob({ dataDir: o.data, storeDir, ...(cassandra ? { cassandra } : {}), dim: o.dim, seed: o.seed, batchSize: o.batchSize ?? 1000, installers: o.installers });
        const { openPrepared } = await import('../../../src/data/prepared.js');
        const pm = (await openPrepared(o.data)).manifest;
        const usersWithoutVector = (pm.usersWithoutVector ?? pm.counts['users.empty-skipped'] ?? 0) + r.skippedEmpty;
        if (o.json) process.stdout.write(`${JSON.stringify({ ...r, usersWithoutVector })}\n`);
        else
          process.stdout.write(
            `embedded ${r.users} users into feature ${r.featureId} (classical TF-IDF + SVD, ${r.dim}-d, ${(r.explainedShare * 100).toFixed(1)}% of the TF-IDF norm) in ${r.seconds.toFixed(1)}s` +
              `${r.installerApps ? `; installer lists for ${r.installerApps} apps` : ''}\n` +
              `users without a vector: ${usersWithoutVector} of ${pm.numUsers + (pm.usersWithoutVector ?? pm.counts['users.empty-skipped'] ?? 0)} in the prepared data\n`,
          );
        return;
      }
      if (o.model === undefined) throw new UserError('--model <dir> is required (or --method svd for classical vectors without a model)');
      if (o.dim !== undefined || o.seed !== undefined) throw new UserError('--dim and --seed are for --method svd (a model decides its own dimensions)');
      const r = await runEmbedJob({
        modelDir: o.model,
        dataDir: o.data,
        storeDir,
        ...(cassandra ? { cassandra } : {}),
        activeSince: o.activeSince,
        backend: o.backend,
        workers: o.workers,
        batchSize: o.batchSize,
        gpuMemoryBudgetMiB: o.gpuMemoryBudget,
        // Only an explicit --overlap / --no-overlap wins over the configuration.
        overlap: cmd.getOptionValueSource('overlap') === 'cli' ? o.overlap : undefined,
        installers: o.installers,
        restart: o.restart,
        maxUsers: o.maxUsers,
        shard: o.shard !== undefined ? parseShard(o.shard) : undefined,
      });
      // Users prepare left without any vocabulary app are not in the shards: they get no vector.
      const { openPrepared } = await import('../../../src/data/prepared.js');
      const pm = (await openPrepared(o.data)).manifest;
      const usersWithoutVector = pm.usersWithoutVector ?? pm.counts['users.empty-skipped'] ?? 0;
      if (o.json) process.stdout.write(`${JSON.stringify({ ...r, usersWithoutVector })}\n`);
      else
        process.stdout.write(
          `embedded ${r.users} users into feature ${r.featureId} (${r.variant}, ${r.dim}-d${cassandra ? `, Cassandra keyspace ${cassandra.keyspace}` : ''}) in ${r.seconds.toFixed(1)}s: ` +
            `${r.usersPerSecond.toFixed(0)} users/s, ${r.gflopsPerSecond.toFixed(1)} GFLOP/s on ${r.backend} x${r.workers}` +
            `${r.skippedInactive ? `; ${r.skippedInactive} inactive users skipped` : ''}${r.resumedFrom ? `; resumed at shard ${r.resumedFrom.shard}` : ''}` +
            `${r.userShard ? `; user shard ${r.userShard} (${r.otherShards} users left to the other shards)` : ''}` +
            `${r.installerApps ? `; installer lists for ${r.installerApps} apps` : ''}\n` +
            `users without a vector: ${usersWithoutVector} of ${pm.numUsers + usersWithoutVector} in the prepared data` +
            `${usersWithoutVector > 0 ? ` (none of their apps is in the vocabulary; aetn prepare --min-installs sets the threshold, now ${pm.minInstalls})` : ''}\n` +
            `batches of ${r.batchSize} users (${Number.isFinite(r.chunkUsers) ? `${r.chunkUsers} per model call` : 'one model call each'}), ${r.overlap ? 'overlapped' : 'not overlapped'}; ` +
            `waited ${r.waited.read.toFixed(1)}s reading, ${r.waited.embed.toFixed(1)}s embedding, ${r.waited.write.toFixed(1)}s writing\n`,
        );
    });
}
