// The tests' one way to run a child process to completion without blocking: a vitest worker (or
// the main process, while workers run) that blocks in spawnSync for about a minute misses vitest's
// RPC deadline and fails the whole run ("Timeout calling onTaskUpdate"). Output is collected;
// `timeoutMs` kills the child (SIGKILL) and reports it.
import { spawn } from 'node:child_process';

export interface Finished {
  /** Exit code (null when killed by a signal). */
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Set when the process could not be started, or was killed for running past timeoutMs. */
  error?: Error;
}

export function runProcess(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Finished> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let error: Error | undefined;
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            error = new Error(`${cmd} ran past ${opts.timeoutMs} ms and was killed`);
            p.kill('SIGKILL');
          }, opts.timeoutMs);
    p.on('error', (err) => (error = err));
    p.on('close', (status, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, ...(error ? { error } : {}) });
    });
  });
}
