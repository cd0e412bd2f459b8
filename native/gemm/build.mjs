// Builds the optional native GEMM addon (OpenBLAS through N-API). Never fails the project's build:
// without a C compiler, OpenBLAS or node-gyp it prints why it skipped and exits 0, and the model then
// runs on the stock tfjs kernels (src/model/native-gemm.ts reports which GEMM is in use).
//   node native/gemm/build.mjs        (npm run build:native; AETN_NATIVE_GEMM=0 skips it)
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function skip(why) {
  console.log(`native GEMM skipped: ${why}; the model uses the stock tfjs kernels`);
  process.exit(0);
}

if (process.env.AETN_NATIVE_GEMM === '0') skip('AETN_NATIVE_GEMM=0');
const cc = process.env.CC || 'cc';

// Probe compiler and OpenBLAS with a tiny program first: node-gyp's own failure output is long and
// buries the one line that matters.
const probeDir = mkdtempSync(join(tmpdir(), 'aetn-gemm-probe-'));
try {
  const src = join(probeDir, 'p.c');
  writeFileSync(src, '#include <cblas.h>\nint main(void){float a=1,b=1,c=0;cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,&a,1,&b,1,0.f,&c,1);openblas_set_num_threads(1);return c==1.f?0:1;}\n');
  const r = spawnSync(cc, [src, '-o', join(probeDir, 'p'), '-lopenblas'], { encoding: 'utf8' });
  if (r.error) skip(`no C compiler (${cc}: ${r.error.code ?? r.error.message})`);
  if (r.status !== 0) {
    const line = (r.stderr || '').split('\n').find((l) => /error|cannot find/i.test(l)) ?? 'compile failed';
    skip(`OpenBLAS (cblas.h, -lopenblas) not usable: ${line.trim()} (Debian: apt-get install libopenblas-dev)`);
  }
} finally {
  rmSync(probeDir, { recursive: true, force: true });
}

// npm passes its bundled node-gyp to scripts; run directly, look for it next to node.
const candidates = [process.env.npm_config_node_gyp, join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')];
const gyp = candidates.find((p) => p && existsSync(p));
if (!gyp) skip('node-gyp not found (it ships with npm)');
// Offline machines: headers from the system Node install (~/.npmrc nodedir=/usr) instead of a download.
const nodedir = process.env.npm_config_nodedir || (existsSync('/usr/include/node/node_api.h') ? '/usr' : undefined);
const gypArgs = [gyp, 'rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
try {
  execFileSync(process.execPath, gypArgs, { cwd: here, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
} catch (err) {
  const out = `${err.stdout ?? ''}\n${err.stderr ?? ''}`;
  const line = out.split('\n').find((l) => /error/i.test(l)) ?? String(err.message).split('\n')[0];
  skip(`node-gyp failed: ${line.trim()}`);
}
// A load check in a fresh process: a .node that builds but cannot load (missing .so at run time)
// would otherwise only show up as a fallback line in the training log.
const addon = join(here, 'build/Release/aetn_gemm.node');
try {
  const cfg = execFileSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(addon)}).config())`], { encoding: 'utf8' }).trim();
  console.log(`native GEMM built: ${addon} (${cfg})`);
} catch (err) {
  rmSync(addon, { force: true });
  skip(`built addon does not load: ${String(err.stderr || err.message).split('\n')[0]}`);
}
