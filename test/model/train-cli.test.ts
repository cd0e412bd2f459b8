// `aetn train` end to end through the compiled CLI (dist/, which the test setup builds):
// generate a tiny world, prepare it, train with 2 worker threads (compiled worker.js), resume.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const bin = join(process.cwd(), 'bin', 'aetn.js');

async function aetn(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [bin, ...args], { env: { ...process.env, AETN_LOG_LEVEL: 'warn', AETN_PROGRESS: '0' }, maxBuffer: 1 << 24 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let root: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'aetn-train-cli-'));
  const g = await aetn(['generate', '--users', '300', '--apps', '400', '--seed', '3', '--out', join(root, 'raw')]);
  expect(g.code, g.stderr).toBe(0);
  const p = await aetn(['prepare', '--in', join(root, 'raw'), '--out', join(root, 'prep'), '--shards', '2']);
  expect(p.code, p.stderr).toBe(0);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('aetn train (compiled CLI)', () => {
  const small = ['--d-model', '16', '--heads', '2', '--enc-layers', '1', '--d-emb', '8', '--batch-size', '100', '--lr', '0.003', '--seed', '2'];

  it('trains with 2 workers and writes manifest, weights, loss.svg and train-log.json', async () => {
    const out = join(root, 'model');
    const r = await aetn(['train', '--data', join(root, 'prep'), '--out', out, '--epochs', '1', '--workers', '2', ...small]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/model\s+aetn-aetn-\d{8}-[0-9a-f]{8}/);
    expect(r.stdout).toMatch(/2 workers/);
    const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(m.workers).toBe(2);
    expect(m.backend).toBe('wasm');
    expect(m.config.dModel).toBe(16);
    expect(m.config.seqLen).toBe(25);
    expect(existsSync(join(out, m.weights.file))).toBe(true);
    expect(readFileSync(join(out, 'loss.svg'), 'utf8')).toMatch(/^<svg/);
    const log = JSON.parse(readFileSync(join(out, 'train-log.json'), 'utf8'));
    expect(log.epochs.length).toBe(1);
    expect(log.epochs[0].users).toBeGreaterThan(200);

    // A second run into the same directory needs --resume; with it, training continues at epoch 2.
    const again = await aetn(['train', '--data', join(root, 'prep'), '--out', out, '--epochs', '2', '--workers', '2', ...small]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already holds a model: pass --resume/);
    const resumed = await aetn(['train', '--data', join(root, 'prep'), '--out', out, '--epochs', '2', '--workers', '2', '--resume', '--json', ...small]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const m2 = JSON.parse(resumed.stdout);
    expect(m2.featureId).toBe(m.featureId);
    expect(m2.metrics.epochsRun).toBe(2);
  });

  it('fails clearly on bad input', async () => {
    const missing = await aetn(['train', '--data', join(root, 'nope'), '--out', join(root, 'x')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/prepared manifest is missing/);
    const badBackend = await aetn(['train', '--data', join(root, 'prep'), '--out', join(root, 'y'), '--backend', 'tensorflow', ...small]);
    expect(badBackend.code).toBe(2);
    expect(badBackend.stderr).toMatch(/npm install @tensorflow\/tfjs-node-gpu/);
    const badHeads = await aetn(['train', '--data', join(root, 'prep'), '--out', join(root, 'z'), '--d-model', '10', '--heads', '4']);
    expect(badHeads.code).toBe(2);
    expect(badHeads.stderr).toMatch(/divisible by heads/);
  });
});
