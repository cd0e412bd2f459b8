// Helper of `bench/gpu-embed.sh pack`: copies into a bundle directory only what the embedding
// benchmark (dist/bench/_gpu-embed.js) loads: our compiled files reachable from it by import
// (static, dynamic, worker threads, the model factory), the npm packages those import with their
// production dependencies, each pruned to the files Node loads on linux-x64, and the OpenBLAS addon
// when it is built. Prints what it took and how large it is.
//
//   node bench/_gpu-bundle.mjs <repo root> <bundle dir>
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';

const [root, out] = process.argv.slice(2).map((p) => resolve(p));
if (!root || !out) {
  console.error('usage: node bench/_gpu-bundle.mjs <repo root> <bundle dir>');
  process.exit(2);
}
const dist = join(root, 'dist');
const entry = join(dist, 'bench', '_gpu-embed.js');
if (!existsSync(entry)) {
  console.error(`${relative(root, entry)} is missing: build first (npx tsc -p tsconfig.json)`);
  process.exit(1);
}

// 1. Our files: follow relative specifiers from the entry. Besides `import ... from './x.js'` and
// `import('./x.js')`, threads start from `spawnWorker(import.meta.url, './worker')` and the engine
// loads its model factory by URL (`./train-model${ext}`), which the scan cannot see.
const files = new Set();
const packages = new Set();
const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const queue = [entry, join(dist, 'src', 'model', 'train-model.js')];
const spec = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"\s]+)['"]|spawnWorker\(import\.meta\.url,\s*['"]([^'"]+)['"]/g;
while (queue.length > 0) {
  const f = queue.pop();
  if (files.has(f)) continue;
  if (!existsSync(f)) {
    console.error(`a compiled file the benchmark imports is missing: ${relative(root, f)}`);
    process.exit(1);
  }
  files.add(f);
  const src = readFileSync(f, 'utf8');
  for (const m of src.matchAll(spec)) {
    const s = m[1] ?? `${m[2]}.js`;
    if (s.startsWith('.')) queue.push(resolve(dirname(f), s));
    else if (!builtins.has(s)) packages.add(s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]);
  }
}
// The backends import their packages through variables (optional ones), so name them here.
for (const p of ['webgpu', '@tensorflow/tfjs-backend-webgpu', '@tensorflow/tfjs-backend-wasm']) packages.add(p);
// Optional packages that are not installed (tfjs-node-gpu) are simply not bundled.
for (const f of files) {
  const to = join(out, relative(root, f));
  mkdirSync(dirname(to), { recursive: true });
  cpSync(f, to);
}

// 2. Packages and their production dependencies, resolved as Node would from where they are.
const taken = new Map(); // package dir -> name
function take(name, fromDir) {
  let pkgJson;
  try {
    pkgJson = createRequire(join(fromDir, 'noop.js')).resolve(`${name}/package.json`);
  } catch {
    // Packages without an exported package.json: walk node_modules upwards.
    let d = fromDir;
    for (;;) {
      const c = join(d, 'node_modules', name, 'package.json');
      if (existsSync(c)) {
        pkgJson = c;
        break;
      }
      const up = dirname(d);
      if (up === d) return false;
      d = up;
    }
  }
  const dir = dirname(pkgJson);
  if (taken.has(dir)) return true;
  taken.set(dir, name);
  const pj = JSON.parse(readFileSync(pkgJson, 'utf8'));
  for (const dep of Object.keys(pj.dependencies ?? {})) {
    if (!take(dep, dir) && !(pj.optionalDependencies ?? {})[dep]) {
      console.error(`${name} depends on ${dep}, which is not installed`);
      process.exit(1);
    }
  }
  for (const dep of Object.keys(pj.optionalDependencies ?? {})) take(dep, dir);
  return true;
}
const missing = [];
for (const p of packages) if (!take(p, root)) missing.push(p);

// 3. Pruning: what Node never loads here. tfjs packages ship the same code in eight bundles; the
// Node one (package.json "main") and the wasm binaries are what runs. Dawn ships one dawn.node per
// platform; this bundle is for linux-x64.
const keepTfjs = (dir, rel) => {
  const main = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).main;
  return rel === 'package.json' || rel === 'LICENSE' || rel === main?.replace(/^\.\//, '') || (/^dist\/[^/]+\.wasm$/.test(rel));
};
const dropAlways = (rel) => /\.(map|d\.ts|d\.mts|d\.cts|md|markdown|ts)$/i.test(rel) && !/^LICENSE/i.test(rel) || /(^|\/)(test|tests|__tests__|docs?|example|examples|\.github)\//.test(rel);
function copyPruned(dir, name) {
  // Resolved paths are real paths (node_modules may be a link): place each package under it the same way.
  const rel = relative(realpathSync(join(root, 'node_modules')), realpathSync(dir));
  if (rel.startsWith('..')) throw new Error(`${name} resolves outside ${join(root, 'node_modules')}: ${dir}`);
  const to = join(out, 'node_modules', rel);
  const tfjs = name.startsWith('@tensorflow/');
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const rel = relative(dir, p).split('\\').join('/');
      if (e.isDirectory()) {
        if (e.name === 'node_modules') continue; // nested packages are taken on their own
        if (name === 'webgpu' && rel.startsWith('dist/') && rel !== 'dist/linux-x64') continue;
        walk(p);
      } else if (e.isFile() || e.isSymbolicLink()) {
        if (tfjs ? !keepTfjs(dir, rel) : dropAlways(rel)) continue;
        mkdirSync(dirname(join(to, rel)), { recursive: true });
        cpSync(p, join(to, rel));
      }
    }
  };
  walk(dir);
}
for (const [dir, name] of taken) copyPruned(dir, name);

// 4. The OpenBLAS addon, when built (it needs the host's libopenblas; without it the CPU path runs
// tfjs-wasm's own kernels and says so).
const addon = join(root, 'native', 'gemm', 'build', 'Release', 'aetn_gemm.node');
if (existsSync(addon)) {
  mkdirSync(join(out, 'native', 'gemm', 'build', 'Release'), { recursive: true });
  cpSync(addon, join(out, 'native', 'gemm', 'build', 'Release', 'aetn_gemm.node'));
}
// ESM: the compiled files are ES modules, which Node knows from the nearest package.json.
writeFileSync(join(out, 'package.json'), `${JSON.stringify({ name: 'aetn-gpu-embed-bundle', private: true, type: 'module' }, null, 2)}\n`);

const size = (p) => {
  const s = statSync(p);
  return s.isDirectory() ? readdirSync(p).reduce((a, e) => a + size(join(p, e)), 0) : s.size;
};
const mib = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const names = [...taken.values()].sort();
const lines = [
  `compiled files: ${files.size} (${mib([...files].reduce((a, f) => a + statSync(f).size, 0))})`,
  `packages: ${names.length} (${mib(size(join(out, 'node_modules')))} pruned): ${names.join(', ')}`,
  ...(missing.length ? [`not installed, not bundled (optional): ${missing.join(', ')}`] : []),
  `OpenBLAS addon: ${existsSync(addon) ? 'bundled' : 'not built here, not bundled'}`,
];
writeFileSync(join(out, 'MANIFEST.txt'), `${lines.join('\n')}\n`);
for (const l of lines) console.log(l);
