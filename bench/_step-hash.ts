// Not a benchmark (bench/run.js skips '_' files): prints a hash of one paper-size training step's
// gradient (M = 500, chunks of 3 users), of 5 users' vectors, and the step's losses. A speed change
// that claims to keep values must print the same line before and after (e.g. with and without
// AETN_WASM_COPY_IDENTITY=1 or AETN_WASM_STOCK_SUM=1):  npx tsx bench/_step-hash.ts
import { createHash } from 'node:crypto';
import { initBackend } from '../src/model/backend.js';
import { LocalEngine } from '../src/model/train-engine.js';
import { factory } from '../src/model/train-model.js';
import { PAPER, users, vocabulary } from './_aetn-users.js';
await initBackend('wasm');
const cfg = factory.makeConfig(vocabulary(500), PAPER, { seqLen: 25, dateBuckets: 52 });
const e = LocalEngine.create(factory, cfg, 1, { chunkUsers: 3 });
const g = new Float32Array(e.numParams);
const r = e.gradientSync(users(7, 500, 3), 5, g);
const v = e.embedSync(users(5, 500, 4));
console.log(createHash('sha256').update(Buffer.from(g.buffer)).digest('hex').slice(0, 16), createHash('sha256').update(Buffer.from(v.buffer)).digest('hex').slice(0, 16), JSON.stringify(r.losses));
await e.close();
