// Installs the Go command-line tools the gRPC tests and benchmarks drive (clients we did not
// write), pinned, into <repo>/.cache/bin, on first use. Installs go to a private GOBIN and are
// renamed into place, so concurrent test files never see a half-written binary.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const GO_TOOLS = {
  grpcurl: 'github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3',
  ghz: 'github.com/bojand/ghz/cmd/ghz@v0.120.0',
} as const;

export type GoTool = keyof typeof GO_TOOLS;

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
export const BIN_DIR = join(REPO_ROOT, '.cache', 'bin');

/** Path of the tool, installing it with `go install` when missing (can take a few minutes the first time). */
export async function ensureGoTool(name: GoTool): Promise<string> {
  const target = join(BIN_DIR, name);
  if (existsSync(target)) return target;
  mkdirSync(BIN_DIR, { recursive: true });
  const tmp = mkdtempSync(join(BIN_DIR, `.${name}-`));
  try {
    await run('go', ['install', GO_TOOLS[name]], {
      env: { ...process.env, GOBIN: tmp, GOFLAGS: '-mod=mod' },
      timeout: 15 * 60_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    renameSync(join(tmp, name), target);
  } catch (err) {
    const e = err as { code?: string; stderr?: string; message: string };
    if (e.code === 'ENOENT') throw new Error(`cannot install ${name}: the Go toolchain (go) is not on PATH`);
    throw new Error(`go install ${GO_TOOLS[name]} failed: ${e.stderr || e.message}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return target;
}
