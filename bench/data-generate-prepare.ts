// Benchmark: `aetn generate` + `aetn prepare` throughput (users/s), next to a baseline measured in
// the same run: a plain line-by-line read of the raw files prepare consumes (the I/O + UTF-8 decode
// floor any streaming parser pays). Usage:
//   npx tsx bench/data-generate-prepare.ts [--users 100000] [--dir /tmp/aetn-bench-data] [--single]
// --single also times generate and prepare with one thread, to show what the worker threads give.
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { generate } from '../src/data/generate.js';
import { readLines } from '../src/data/lines.js';
import { prepare } from '../src/data/prepare.js';

const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const users = Number(arg('users', '100000'));
const dir = arg('dir', '/tmp/aetn-bench-data');
const single = process.argv.includes('--single');
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });

// CPU seconds are process-wide (all threads): on a shared, loaded machine they show the work done
// even when wall time is stretched by other processes.
let lastCpu = 0;
const time = async <T>(f: () => Promise<T> | T): Promise<[T, number]> => {
  const t = performance.now();
  const c = process.cpuUsage();
  const r = await f();
  const u = process.cpuUsage(c);
  lastCpu = (u.user + u.system) / 1e6;
  return [r, (performance.now() - t) / 1000];
};

const rows: { step: string; seconds: number; cpuSeconds?: number; usersPerS: number; note: string }[] = [];
const raw = join(dir, 'raw');
const [g, tGen] = await time(() => generate({ users, seed: 1, out: raw, progress: false }));
rows.push({ step: `generate (${Math.min(availableParallelism(), 8)} threads)`, seconds: tGen, cpuSeconds: lastCpu, usersPerS: users / tGen, note: `${g.events + g.heldOutEvents} events` });
if (single) {
  const [, t1] = await time(() => generate({ users, seed: 1, out: join(dir, 'raw1'), progress: false, workers: 1 }));
  rows.push({ step: 'generate (1 thread)', seconds: t1, cpuSeconds: lastCpu, usersPerS: users / t1, note: '' });
  rmSync(join(dir, 'raw1'), { recursive: true, force: true });
}

const files = ['apps.csv', 'installed.csv', 'events.csv', 'next_week.csv'].map((f) => join(raw, f));
const bytes = files.reduce((a, f) => a + statSync(f).size, 0);
const [lines, tRead] = await time(() => {
  let n = 0;
  let chars = 0;
  for (const f of files) for (const [l] of readLines(f)) {
    n++;
    chars += l.length;
  }
  return n + chars * 0; // keep the loop from being optimised away without changing the count
});
rows.push({ step: 'baseline: read raw files line by line', seconds: tRead, cpuSeconds: lastCpu, usersPerS: users / tRead, note: `${lines} lines, ${(bytes / 2 ** 20).toFixed(0)} MiB, ${(bytes / 2 ** 20 / tRead).toFixed(0)} MiB/s` });

const [p, tPrep] = await time(() => prepare({ input: raw, out: join(dir, 'prepared'), progress: false }));
rows.push({ step: `prepare (${Math.min(availableParallelism(), 8)} threads for assembly)`, seconds: tPrep, cpuSeconds: lastCpu, usersPerS: users / tPrep, note: `${p.manifest.numUsers} users, ${p.manifest.numApps} apps, ${p.rejected} rejected; pass 1 ${p.timings.pass1.toFixed(1)} s, pass 2 ${p.timings.pass2.toFixed(1)} s` });
if (single) {
  const [, t1] = await time(() => prepare({ input: raw, out: join(dir, 'prepared1'), progress: false, workers: 1 }));
  rows.push({ step: 'prepare (1 thread)', seconds: t1, cpuSeconds: lastCpu, usersPerS: users / t1, note: '' });
}

const ratio = tPrep / tRead;
const cpuOf = (step: string): number => rows.find((r) => r.step.startsWith(step))?.cpuSeconds ?? NaN;
const cpuRatio = cpuOf('prepare') / cpuOf('baseline');
const out = {
  bench: 'data-generate-prepare',
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg().map((x) => +x.toFixed(1)), node: process.version },
  users,
  rawBytes: bytes,
  rows: rows.map((r) => ({ ...r, seconds: +r.seconds.toFixed(2), cpuSeconds: +(r.cpuSeconds ?? NaN).toFixed(2), usersPerS: Math.round(r.usersPerS) })),
  prepareOverReadRatio: +ratio.toFixed(2),
  prepareOverReadCpuRatio: +cpuRatio.toFixed(2),
  generatePlusPrepareUsersPerS: Math.round(users / (tGen + tPrep)),
};
console.log(`\ngenerate + prepare, ${users} users (${cpus().length} cores, load average ${out.machine.loadavg.join(' ')})\n`);
console.log(`${'step'.padEnd(46)}${'wall s'.padStart(9)}${'cpu s'.padStart(9)}${'users/s'.padStart(10)}  note`);
for (const r of out.rows) console.log(`${r.step.padEnd(46)}${r.seconds.toFixed(2).padStart(9)}${r.cpuSeconds.toFixed(2).padStart(9)}${String(r.usersPerS).padStart(10)}  ${r.note}`);
console.log(`\nprepare takes ${ratio.toFixed(2)}x the wall time (${cpuRatio.toFixed(2)}x the CPU time) of just reading its input line by line; generate + prepare: ${out.generatePlusPrepareUsersPerS} users/s`);
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(join(import.meta.dirname, 'results', 'data-generate-prepare.json'), `${JSON.stringify(out, null, 2)}\n`);
rmSync(dir, { recursive: true, force: true });
