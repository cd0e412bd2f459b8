// `aetn embed`: the batch job that writes long-term vectors of a trained model into the store.
import type { Command } from 'commander';
import { positiveInt as int } from '../flags.js';


export function register(program: Command): void {
  program
    .command('embed')
    .description(
      'Embed all users of a prepared dataset (or only those active since a date) with a trained checkpoint and write ' +
        "the long-term vectors to the store under the checkpoint's feature id. Inference only; streams shards; both " +
        'cores; crash-safe and resumable (re-run the same command). A new model writes a new feature id beside the old.',
    )
    .requiredOption('--model <dir>', 'trained model directory (aetn train --out)')
    .requiredOption('--data <dir>', 'prepared dataset (aetn prepare --out)')
    .requiredOption('--store <dir>', 'embedding store directory (created if missing)')
    .option('--active-since <YYYY-MM-DD>', 'only users with an install/uninstall on or after this day (feature updating)')
    .option('--backend <name>', 'wasm | webgpu | tensorflow | cpu (default: $AETN_BACKEND, else tensorflow when installed, else wasm)')
    .option('--workers <n>', 'worker threads (default: 1 on the native OpenBLAS GEMM, which uses every core itself; else number of cores)', int('--workers'))
    .option('--batch-size <n>', 'users per model call and store transaction', int('--batch-size'), 1000)
    .option('--no-installers', 'do not rewrite the "installers of app X" lists')
    .option('--restart', "ignore an unfinished run's progress and start over")
    .option('--max-users <n>', 'stop after N users (the run stays resumable)', int('--max-users'))
    .option('--shard <i/n>', 'embed only user shard i of n (users by hash of the user id), so n machines split one run; each shard resumes on its own and their union equals the unsharded run')
    .option('--json', 'print the result as JSON on stdout')
    .action(async (o: { model: string; data: string; store: string; activeSince?: string; backend?: string; workers?: number; batchSize: number; installers: boolean; restart?: boolean; maxUsers?: number; shard?: string; json?: boolean }) => {
      const { runEmbedJob, parseShard } = await import('../../embed.js');
      const r = await runEmbedJob({
        modelDir: o.model,
        dataDir: o.data,
        storeDir: o.store,
        activeSince: o.activeSince,
        backend: o.backend,
        workers: o.workers,
        batchSize: o.batchSize,
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
          `embedded ${r.users} users into feature ${r.featureId} (${r.variant}, ${r.dim}-d) in ${r.seconds.toFixed(1)}s: ` +
            `${r.usersPerSecond.toFixed(0)} users/s, ${r.gflopsPerSecond.toFixed(1)} GFLOP/s on ${r.backend} x${r.workers}` +
            `${r.skippedInactive ? `; ${r.skippedInactive} inactive users skipped` : ''}${r.resumedFrom ? `; resumed at shard ${r.resumedFrom.shard}` : ''}` +
            `${r.userShard ? `; user shard ${r.userShard} (${r.otherShards} users left to the other shards)` : ''}` +
            `${r.installerApps ? `; installer lists for ${r.installerApps} apps` : ''}\n` +
            `users without a vector: ${usersWithoutVector} of ${pm.numUsers + usersWithoutVector} in the prepared data` +
            `${usersWithoutVector > 0 ? ` (none of their apps is in the vocabulary; aetn prepare --min-installs sets the threshold, now ${pm.minInstalls})` : ''}\n`,
        );
    });
}
