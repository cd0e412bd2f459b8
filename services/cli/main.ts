// The `aetn` command. Each file in ./commands registers one sub-command; they are discovered
// at start so that adding a command never touches this file. Command modules must import heavy
// dependencies (tfjs, lmdb, kafkajs, grpc) lazily inside their action, so `--help` stays fast.
import { Command, CommanderError } from 'commander';
import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';
import { UserError } from '../../src/util/errors.js';

export async function buildProgram(): Promise<Command> {
  const program = new Command('aetn')
    .description('User vectors from mobile app usage: data, AETN training, embedding, index, serving.')
    .showHelpAfterError()
    .exitOverride()
    // A --config file also holds the libraries' runtime settings, which they read from
    // $AETN_CONFIG (in this process and its worker threads): pass it on.
    .hook('preAction', (_program, action) => {
      const file = (action.opts() as { config?: unknown }).config;
      if (typeof file === 'string' && file !== '') process.env.AETN_CONFIG = file;
    });
  const here = dirname(fileURLToPath(import.meta.url));
  const dir = join(here, 'commands');
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const files = readdirSync(dir).filter((f) => f.endsWith(ext) && !f.endsWith('.d.ts') && !f.includes('.test.')).sort();
  for (const f of files) {
    const mod = (await import(pathToFileURL(join(dir, f)).href)) as { register?: (p: Command) => void };
    if (typeof mod.register === 'function') mod.register(program);
  }
  return program;
}

export async function runCli(argv: string[]): Promise<number> {
  const program = await buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode;
    }
    if (err instanceof UserError) {
      process.stderr.write(`aetn: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`aetn: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

if (process.argv[1] && (import.meta.url === pathToFileURL(process.argv[1]).href || process.argv[1].endsWith('/bin/aetn.js') || process.argv[1].endsWith('/aetn'))) {
  const code = await runCli(process.argv.slice(2));
  // Long-lived commands (serve, realtime, start) keep the event loop alive themselves.
  if (code !== 0) process.exit(code);
}
