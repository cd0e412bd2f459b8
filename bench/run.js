#!/usr/bin/env node
// `npm run bench [-- name ...]`: runs the benchmarks in bench/ one after another (each prints its
// own table of ratios against a baseline measured in the same run and writes bench/results/*.json).
// With names, runs only the files whose name contains one of them, e.g. `npm run bench -- index`.
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const want = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && !f.startsWith('_'))
  .filter((f) => want.length === 0 || want.some((w) => f.includes(w)))
  .sort();
if (files.length === 0) {
  console.error(`no benchmark matches ${want.join(', ')}; available: ${readdirSync(here).filter((f) => f.endsWith('.ts')).join(', ')}`);
  process.exit(2);
}
let failed = 0;
for (const f of files) {
  console.log(`\n=== bench/${f} ===`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, f)], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.error(`bench/${f} exited with ${r.status ?? r.signal}`);
  }
}
process.exit(failed ? 1 : 0);
