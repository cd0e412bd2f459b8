// Checkpoints: <dir>/manifest.json + <dir>/weights-<sha12>.bin, and <dir>/resume.ckpt for --resume.
// Weights file: 'AETNWTS1' | u32 header length | header JSON {variables:[{name,shape}], numParams} |
// zero padding to 4 bytes | float32 little-endian values of every variable in the model's order.
// Writes are atomic (temp file, fsync, rename) and the weights file name carries its own hash: the
// manifest is renamed into place last, so a crash at any point leaves the previous consistent pair.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import type { VariableLayout } from './train-engine.js';

export const WEIGHTS_MAGIC = 'AETNWTS1';
const RESUME_MAGIC = 'AETNRES1';
export const MANIFEST_FILE = 'manifest.json';
export const RESUME_FILE = 'resume.ckpt';

export interface CheckpointManifest {
  format: 'aetn-checkpoint';
  formatVersion: 1;
  /** New for every trained model: vectors of different feature ids never mix. */
  featureId: string;
  /** Which factory builds the model ('aetn' for the product). */
  modelKind: string;
  variant: string;
  /** The full model config (typed arrays encoded by configToJson). */
  config: Record<string, unknown>;
  dim: number;
  vocab: { hash: string; numApps: number; numCategories: number };
  backend: string;
  backendDetail?: string;
  workers: number;
  seed: number;
  createdAt: string;
  updatedAt: string;
  /** Training results: best epoch, validation and training losses, throughput. */
  metrics: Record<string, unknown>;
  /** The training options that produced the model (data dir, epochs, batch size, lr, ...). */
  training: Record<string, unknown>;
  weights: { file: string; sha256: string; bytes: number; numParams: number; variables: Array<{ name: string; shape: number[] }> };
}

export type ManifestDraft = Omit<CheckpointManifest, 'weights' | 'format' | 'formatVersion'>;

export function newFeatureId(variant: string, now = new Date()): string {
  const d = now.toISOString().slice(0, 10).replace(/-/g, '');
  return `aetn-${variant}-${d}-${randomBytes(4).toString('hex')}`;
}

// Typed arrays (e.g. appCategory: Int32Array) survive the JSON round trip by a tagged encoding.
export function configToJson(cfg: unknown): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify(cfg, (_k, v: unknown) => {
      if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return { $typed: v.constructor.name, data: Array.from(v as unknown as ArrayLike<number>) };
      return v;
    }),
  ) as Record<string, unknown>;
}

const TYPED: Record<string, new (a: number[]) => ArrayLike<number>> = {
  Int32Array,
  Float32Array,
  Float64Array,
  Uint8Array,
  Uint32Array,
  Int16Array,
  Uint16Array,
  Int8Array,
};

export function configFromJson<C = Record<string, unknown>>(json: Record<string, unknown>): C {
  return JSON.parse(JSON.stringify(json), (_k, v: unknown) => {
    if (v && typeof v === 'object' && '$typed' in v) {
      const t = v as { $typed: string; data: number[] };
      const Ctor = TYPED[t.$typed];
      if (!Ctor) throw new UserError(`checkpoint config holds an unknown array type ${t.$typed}`);
      return new Ctor(t.data);
    }
    return v;
  }) as C;
}

function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

function encodeBlob(magic: string, header: unknown, arrays: Float32Array[]): Uint8Array {
  const h = Buffer.from(JSON.stringify(header));
  const pre = 8 + 4 + h.length;
  const pad = (4 - (pre % 4)) % 4;
  const floats = arrays.reduce((a, x) => a + x.length, 0);
  const out = new Uint8Array(pre + pad + floats * 4);
  out.set(Buffer.from(magic, 'latin1'), 0);
  new DataView(out.buffer).setUint32(8, h.length, true);
  out.set(h, 12);
  let off = pre + pad;
  for (const a of arrays) {
    // Float32Array views are host-endian; checkpoints are little-endian (every supported host is).
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), off);
    off += a.byteLength;
  }
  return out;
}

function decodeBlob(buf: Uint8Array, magic: string, what: string): { header: Record<string, unknown>; floats: Float32Array } {
  if (buf.length < 12 || Buffer.from(buf.subarray(0, 8)).toString('latin1') !== magic) {
    throw new UserError(`${what} is not a checkpoint file of this format (bad magic)`);
  }
  const hl = new DataView(buf.buffer, buf.byteOffset).getUint32(8, true);
  if (12 + hl > buf.length) throw new UserError(`${what} is truncated (header)`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(buf.subarray(12, 12 + hl)).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new UserError(`${what} is corrupt (unreadable header)`);
  }
  const pre = 12 + hl;
  const start = pre + ((4 - (pre % 4)) % 4);
  const n = Math.max(0, Math.floor((buf.length - start) / 4));
  // Copy into an aligned buffer: the file buffer may not start at a multiple of 4.
  const floats = new Float32Array(n);
  new Uint8Array(floats.buffer).set(buf.subarray(start, start + n * 4));
  if ((buf.length - start) % 4 !== 0) throw new UserError(`${what} is truncated (partial value)`);
  return { header, floats };
}

export interface SavedCheckpoint {
  manifest: CheckpointManifest;
  dir: string;
}

/** Saves weights + manifest into `dir` atomically; removes the weights file it replaces. */
export async function saveCheckpoint(dir: string, draft: ManifestDraft, layout: VariableLayout[], weights: Float32Array): Promise<SavedCheckpoint> {
  await mkdir(dir, { recursive: true });
  const variables = layout.map((l) => ({ name: l.name, shape: l.shape }));
  const numParams = layout.reduce((a, l) => a + l.size, 0);
  if (numParams !== weights.length) throw new Error(`layout has ${numParams} values, weights ${weights.length}`);
  const blob = encodeBlob(WEIGHTS_MAGIC, { variables, numParams }, [weights]);
  const hash = sha256(blob);
  const file = `weights-${hash.slice(0, 12)}.bin`;
  writeFileAtomic(join(dir, file), blob);
  const manifest: CheckpointManifest = {
    format: 'aetn-checkpoint',
    formatVersion: 1,
    ...draft,
    weights: { file, sha256: hash, bytes: blob.length, numParams, variables },
  };
  writeFileAtomic(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  for (const f of await readdir(dir)) {
    if (/^weights-[0-9a-f]{12}\.bin$/.test(f) && f !== file) await rm(join(dir, f), { force: true });
  }
  return { manifest, dir };
}

export async function readManifest(dir: string): Promise<CheckpointManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`no model checkpoint in ${dir} (${MANIFEST_FILE} missing)`);
    throw err;
  }
  let m: CheckpointManifest;
  try {
    m = JSON.parse(text) as CheckpointManifest;
  } catch {
    throw new UserError(`model checkpoint ${join(dir, MANIFEST_FILE)} is corrupt (not valid JSON)`);
  }
  if (m?.format !== 'aetn-checkpoint' || !m.weights?.file) throw new UserError(`${join(dir, MANIFEST_FILE)} is not an AETN checkpoint manifest`);
  if (m.formatVersion !== 1) throw new UserError(`checkpoint format version ${m.formatVersion} is not supported (expected 1)`);
  return m;
}

export interface LoadedCheckpoint {
  manifest: CheckpointManifest;
  weights: Float32Array;
  layout: VariableLayout[];
}

/**
 * Loads and verifies a checkpoint. With `vocabHash`, a checkpoint trained on another vocabulary is
 * refused (its app indices would mean other apps).
 */
export async function loadCheckpoint(dir: string, opts: { vocabHash?: string } = {}): Promise<LoadedCheckpoint> {
  const manifest = await readManifest(dir);
  if (opts.vocabHash !== undefined && opts.vocabHash !== manifest.vocab.hash) {
    throw new UserError(
      `model ${manifest.featureId} in ${dir} was trained on vocabulary ${manifest.vocab.hash}, but the data uses vocabulary ${opts.vocabHash}: ` +
        `app indices would not match; train a model on this data or embed the data it was trained on`,
    );
  }
  const path = join(dir, manifest.weights.file);
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`model checkpoint ${dir} is incomplete: ${manifest.weights.file} is missing`);
    throw err;
  }
  if (buf.length !== manifest.weights.bytes) {
    throw new UserError(`model checkpoint ${path} is truncated or damaged: ${buf.length} bytes, the manifest says ${manifest.weights.bytes}`);
  }
  const got = sha256(buf);
  if (got !== manifest.weights.sha256) {
    throw new UserError(`model checkpoint ${path} is corrupt: sha256 ${got.slice(0, 16)}... does not match the manifest's ${manifest.weights.sha256.slice(0, 16)}...`);
  }
  const { header, floats } = decodeBlob(buf, WEIGHTS_MAGIC, path);
  const variables = header.variables as Array<{ name: string; shape: number[] }>;
  let offset = 0;
  const layout: VariableLayout[] = variables.map((v) => {
    const size = v.shape.reduce((a, b) => a * b, 1);
    const l = { name: v.name, shape: v.shape, offset, size };
    offset += size;
    return l;
  });
  if (offset !== floats.length) throw new UserError(`model checkpoint ${path} is corrupt: ${floats.length} values for ${offset} parameters`);
  return { manifest, weights: floats, layout };
}

/** Fails clearly unless a checkpoint's variables fit a model's (same count, order and shapes). */
export function checkLayout(saved: VariableLayout[], model: VariableLayout[], where: string): void {
  const fmt = (l: VariableLayout[]) => `${l.length} variables / ${l.reduce((a, x) => a + x.size, 0)} values`;
  const bad = saved.length !== model.length || saved.some((s, i) => s.shape.join('x') !== model[i]!.shape.join('x'));
  if (bad) {
    const i = saved.findIndex((s, k) => !model[k] || s.shape.join('x') !== model[k]!.shape.join('x'));
    const detail = i >= 0 ? ` (first difference: ${saved[i]!.name} [${saved[i]!.shape}] vs ${model[i]?.name ?? 'none'} [${model[i]?.shape ?? ''}])` : '';
    throw new UserError(`checkpoint ${where} does not fit the model built from its config: ${fmt(saved)} vs ${fmt(model)}${detail}`);
  }
}

// ---- resume state: the latest epoch's weights and Adam moments, for --resume ----

export interface ResumeState {
  featureId: string;
  /** Hash of the model config + the options that must not change across a resume. */
  configHash: string;
  /** Number of finished epochs. */
  epochsDone: number;
  adamStep: number;
  /** Everything else the loop needs to continue exactly: history, best epoch, patience counter. */
  loop: Record<string, unknown>;
}

export async function saveResume(dir: string, state: ResumeState, weights: Float32Array, m: Float32Array, v: Float32Array): Promise<void> {
  const payloadHash = sha256(encodeBlob(RESUME_MAGIC, {}, [weights, m, v]).subarray(12));
  const blob = encodeBlob(RESUME_MAGIC, { ...state, numParams: weights.length, payloadHash }, [weights, m, v]);
  writeFileAtomic(join(dir, RESUME_FILE), blob);
}

export async function loadResume(dir: string): Promise<{ state: ResumeState; weights: Float32Array; m: Float32Array; v: Float32Array } | undefined> {
  const path = join(dir, RESUME_FILE);
  try {
    await stat(path);
  } catch {
    return undefined;
  }
  const buf = await readFile(path);
  const { header, floats } = decodeBlob(buf, RESUME_MAGIC, path);
  const n = Number(header.numParams);
  if (floats.length !== 3 * n) throw new UserError(`resume state ${path} is truncated (${floats.length} of ${3 * n} values)`);
  const check = sha256(encodeBlob(RESUME_MAGIC, {}, [floats]).subarray(12));
  if (check !== header.payloadHash) throw new UserError(`resume state ${path} is corrupt (checksum mismatch)`);
  return {
    state: header as unknown as ResumeState,
    weights: floats.slice(0, n),
    m: floats.slice(n, 2 * n),
    v: floats.slice(2 * n),
  };
}

export function hashJson(x: unknown): string {
  return createHash('sha256').update(JSON.stringify(configToJson(x))).digest('hex').slice(0, 16);
}
