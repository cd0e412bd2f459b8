// Effective configuration of the long-running processes (serve, realtime, start).
// Sources, later ones winning: built-in defaults < config file (JSON) < environment (AETN_*) < CLI flags.
// Validation happens once at start and names the offending key, so a typo never turns into a
// silently ignored setting.
import { readFileSync } from 'node:fs';
import { UserError } from '../util/errors.js';

export interface AetnConfig {
  storeDir: string;
  /**
   * Where vectors, runs, installers and index files live. 'lmdb' (the default): the embedded
   * store in storeDir on this host. 'cassandra': the shared store of the cluster mode
   * (docs/parts/scale-out.md), reached through `store.cassandra`.
   */
  store: {
    backend: 'lmdb' | 'cassandra';
    cassandra: {
      /** host or host:port of some nodes; the driver finds the rest of the cluster from them. */
      contactPoints: string[];
      /** Data center of the nodes this process talks to (a single-DC cluster: 'datacenter1'). */
      localDataCenter: string;
      keyspace: string;
      /** Replication factor of the keyspace when this process creates it (an existing keyspace is left as it is). */
      replicationFactor: number;
      /** Consistency of every read and write. */
      consistency: CassandraConsistency;
      /** Driver timeout of one request, in ms. */
      requestTimeoutMs: number;
    };
  };
  serve: {
    host: string;
    port: number;
    tlsCert: string | null;
    tlsKey: string | null;
    /** API key -> scopes. Empty with authDisabled=false means every call is refused. */
    apiKeys: Record<string, string[]>;
    authDisabled: boolean;
    drainTimeoutMs: number;
    /** Look-alike calls score every user (no candidate search) in features of at most this many users. */
    lookalikeExhaustiveMaxUsers: number;
    /**
     * Look-alike calls stack the TF-IDF + SVD member in features of at most this many users (its
     * fit covers every user, once per population sample, on the serving thread: ~70 ms at 3,000).
     */
    lookalikeSvdMaxUsers: number;
    /** Weight of the unit-normalised long-term part in `combined` (a request may set its own). */
    combinedLongWeight: number;
    /** Weight of the unit-normalised short-term part in `combined`. */
    combinedShortWeight: number;
    /** Short-term vectors older than this are served as expired (the head predicts the next 7 days). */
    shortTermHorizonMs: number;
    /** Look-alike floor: fewer seeds with a vector than this is refused (not for targeting individuals). */
    lookalikeMinSeeds: number;
    /** Look-alike floor: a smaller audience (asked for, or found) than this is refused. */
    lookalikeMinAudience: number;
    /** Cassandra backend: how often a replica looks for a new index generation of its features, in seconds. */
    indexPollSeconds: number;
  };
  metrics: { host: string; port: number | null };
  kafka: { brokers: string[]; topic: string; dlqTopic: string; groupId: string; clientId: string };
  realtime: {
    headDir: string | null;
    maxEvents: number;
    /**
     * Cassandra backend: how long the consumer retries a read or write of the shared state that
     * failed for a transient reason (timeout, too few replicas, overloaded), with backoff, before
     * it stops.
     */
    storeRetryMs: number;
  };
  logLevel: string;
  /**
   * How the libraries run, in every process and worker thread (training, embedding, serving).
   * Read where they are used (runtimeSettings), so a worker thread sees what its parent set.
   */
  runtime: {
    /** tfjs backend; a --backend flag wins. */
    backend: 'wasm' | 'cpu' | 'tensorflow' | 'webgpu';
    /** The OpenBLAS GEMM addon: 'default' (training; batch-invariant for inference), 'all' (plain calls everywhere), 'off' (stock tfjs kernels). */
    nativeGemm: 'default' | 'all' | 'off';
    /** The realtime head's host forward for users with few events (false: tfjs for everyone). */
    headHost: boolean;
    /** Path of another build of the hnswlib-node addon (e.g. -march=native); null: the installed one. */
    hnswlibAddon: string | null;
    /** Keep tfjs-wasm's own transposed BatchMatMul instead of ours (for comparisons). */
    wasmNaiveTransposedMatmul: boolean;
    /** Memory per model engine in MiB (>= 64); null: the built-in default. A --memory-budget flag wins. */
    memoryBudgetMiB: number | null;
    /**
     * Device memory the webgpu engine may use for embedding, in MiB (>= 64); null: the built-in
     * default (4096). Sets the users per device call (two calls in flight) and, from it, the default
     * `aetn embed` batch on webgpu.
     */
    gpuMemoryBudgetMiB: number | null;
    /**
     * `aetn embed` reads the next batch and commits the last one while the current one embeds, and the
     * webgpu engine dispatches its next chunk while the device computes: 'auto' (on webgpu only),
     * 'on' or 'off'.
     */
    embedOverlap: 'auto' | 'on' | 'off';
    /** Progress bars on stderr. */
    progress: boolean;
  };
}

export const CASSANDRA_CONSISTENCIES = ['one', 'localOne', 'quorum', 'localQuorum', 'all'] as const;
export type CassandraConsistency = (typeof CASSANDRA_CONSISTENCIES)[number];

export const DEFAULTS: AetnConfig = {
  storeDir: 'aetn-data/store',
  store: {
    backend: 'lmdb',
    cassandra: { contactPoints: ['127.0.0.1:9042'], localDataCenter: 'datacenter1', keyspace: 'aetn', replicationFactor: 3, consistency: 'localQuorum', requestTimeoutMs: 12_000 },
  },
  serve: { host: '127.0.0.1', port: 50051, tlsCert: null, tlsKey: null, apiKeys: {}, authDisabled: false, drainTimeoutMs: 10_000, lookalikeExhaustiveMaxUsers: 100_000, lookalikeSvdMaxUsers: 5000, combinedLongWeight: 0.8, combinedShortWeight: 0.6, shortTermHorizonMs: 7 * 86_400_000, lookalikeMinSeeds: 50, lookalikeMinAudience: 100, indexPollSeconds: 10 },
  metrics: { host: '127.0.0.1', port: 9464 },
  kafka: { brokers: [], topic: 'app-events', dlqTopic: 'app-events.dlq', groupId: 'aetn-realtime', clientId: 'aetn' },
  realtime: { headDir: null, maxEvents: 32, storeRetryMs: 30_000 },
  logLevel: 'info',
  runtime: { backend: 'wasm', nativeGemm: 'default', headHost: true, hnswlibAddon: null, wasmNaiveTransposedMatmul: false, memoryBudgetMiB: null, gpuMemoryBudgetMiB: null, embedOverlap: 'auto', progress: true },
};

export const SCOPES = ['vectors:read', 'audience:write', 'events:write', 'admin'] as const;
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

type Kind = 'storeBackend' | 'consistency' | 'cqlName' | 'string' | 'nullableString' | 'port' | 'nullablePort' | 'int' | 'nullableInt' | 'weight' | 'bool' | 'stringList' | 'keys' | 'logLevel' | 'backend' | 'nativeGemm' | 'autoOnOff';
const BACKENDS = ['wasm', 'cpu', 'tensorflow', 'webgpu'];

/** Every key a user may set, with its type and its environment variable. */
const SCHEMA: Record<string, { kind: Kind; env: string; secret?: boolean }> = {
  storeDir: { kind: 'string', env: 'AETN_STORE_DIR' },
  'store.backend': { kind: 'storeBackend', env: 'AETN_STORE_BACKEND' },
  'store.cassandra.contactPoints': { kind: 'stringList', env: 'AETN_CASSANDRA_CONTACT_POINTS' },
  'store.cassandra.localDataCenter': { kind: 'string', env: 'AETN_CASSANDRA_LOCAL_DC' },
  'store.cassandra.keyspace': { kind: 'cqlName', env: 'AETN_CASSANDRA_KEYSPACE' },
  'store.cassandra.replicationFactor': { kind: 'int', env: 'AETN_CASSANDRA_REPLICATION_FACTOR' },
  'store.cassandra.consistency': { kind: 'consistency', env: 'AETN_CASSANDRA_CONSISTENCY' },
  'store.cassandra.requestTimeoutMs': { kind: 'int', env: 'AETN_CASSANDRA_REQUEST_TIMEOUT_MS' },
  'serve.host': { kind: 'string', env: 'AETN_SERVE_HOST' },
  'serve.port': { kind: 'port', env: 'AETN_SERVE_PORT' },
  'serve.tlsCert': { kind: 'nullableString', env: 'AETN_TLS_CERT' },
  'serve.tlsKey': { kind: 'nullableString', env: 'AETN_TLS_KEY' },
  'serve.apiKeys': { kind: 'keys', env: 'AETN_API_KEYS', secret: true },
  'serve.authDisabled': { kind: 'bool', env: 'AETN_AUTH_DISABLED' },
  'serve.drainTimeoutMs': { kind: 'int', env: 'AETN_DRAIN_TIMEOUT_MS' },
  'serve.lookalikeExhaustiveMaxUsers': { kind: 'int', env: 'AETN_LOOKALIKE_EXHAUSTIVE_MAX_USERS' },
  'serve.lookalikeSvdMaxUsers': { kind: 'int', env: 'AETN_LOOKALIKE_SVD_MAX_USERS' },
  'serve.combinedLongWeight': { kind: 'weight', env: 'AETN_COMBINED_LONG_WEIGHT' },
  'serve.combinedShortWeight': { kind: 'weight', env: 'AETN_COMBINED_SHORT_WEIGHT' },
  'serve.shortTermHorizonMs': { kind: 'int', env: 'AETN_SHORT_TERM_HORIZON_MS' },
  'serve.lookalikeMinSeeds': { kind: 'int', env: 'AETN_LOOKALIKE_MIN_SEEDS' },
  'serve.lookalikeMinAudience': { kind: 'int', env: 'AETN_LOOKALIKE_MIN_AUDIENCE' },
  'serve.indexPollSeconds': { kind: 'int', env: 'AETN_INDEX_POLL_SECONDS' },
  'metrics.host': { kind: 'string', env: 'AETN_METRICS_HOST' },
  'metrics.port': { kind: 'nullablePort', env: 'AETN_METRICS_PORT' },
  'kafka.brokers': { kind: 'stringList', env: 'AETN_KAFKA_BROKERS' },
  'kafka.topic': { kind: 'string', env: 'AETN_KAFKA_TOPIC' },
  'kafka.dlqTopic': { kind: 'string', env: 'AETN_KAFKA_DLQ_TOPIC' },
  'kafka.groupId': { kind: 'string', env: 'AETN_KAFKA_GROUP_ID' },
  'kafka.clientId': { kind: 'string', env: 'AETN_KAFKA_CLIENT_ID' },
  'realtime.headDir': { kind: 'nullableString', env: 'AETN_REALTIME_HEAD' },
  'realtime.maxEvents': { kind: 'int', env: 'AETN_REALTIME_MAX_EVENTS' },
  'realtime.storeRetryMs': { kind: 'int', env: 'AETN_REALTIME_STORE_RETRY_MS' },
  logLevel: { kind: 'logLevel', env: 'AETN_LOG_LEVEL' },
  'runtime.backend': { kind: 'backend', env: 'AETN_BACKEND' },
  'runtime.nativeGemm': { kind: 'nativeGemm', env: 'AETN_NATIVE_GEMM' },
  'runtime.headHost': { kind: 'bool', env: 'AETN_HEAD_HOST' },
  'runtime.hnswlibAddon': { kind: 'nullableString', env: 'AETN_HNSWLIB_ADDON' },
  'runtime.wasmNaiveTransposedMatmul': { kind: 'bool', env: 'AETN_WASM_NAIVE_TRANSPOSED_MATMUL' },
  'runtime.memoryBudgetMiB': { kind: 'nullableInt', env: 'AETN_MEMORY_BUDGET_MIB' },
  'runtime.gpuMemoryBudgetMiB': { kind: 'nullableInt', env: 'AETN_GPU_MEMORY_BUDGET_MIB' },
  'runtime.embedOverlap': { kind: 'autoOnOff', env: 'AETN_EMBED_OVERLAP' },
  'runtime.progress': { kind: 'bool', env: 'AETN_PROGRESS' },
};

export interface LoadOptions {
  file?: string | null;
  env?: NodeJS.ProcessEnv;
  /** Dotted keys from CLI flags, e.g. { 'serve.port': 7000 }. */
  overrides?: Record<string, unknown>;
}

export function loadConfig(opts: LoadOptions = {}): AetnConfig {
  const cfg = structuredClone(DEFAULTS);
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.AETN_CONFIG ?? null;
  if (file) for (const [key, value] of readFile(file)) apply(cfg, key, value, `config file ${file}`);
  for (const [key, spec] of Object.entries(SCHEMA)) {
    const v = env[spec.env];
    if (v !== undefined && v !== '') apply(cfg, key, v, `environment variable ${spec.env}`);
  }
  for (const [key, value] of Object.entries(opts.overrides ?? {})) {
    if (value !== undefined) apply(cfg, key, value, 'command line');
  }
  if (cfg.serve.combinedLongWeight === 0 && cfg.serve.combinedShortWeight === 0) {
    throw new UserError('config: serve.combinedLongWeight and serve.combinedShortWeight are both 0; give at least one part of `combined` a positive weight');
  }
  if (cfg.store.cassandra.contactPoints.length === 0) {
    throw new UserError('config: store.cassandra.contactPoints is empty; give at least one host or host:port');
  }
  for (const cp of cfg.store.cassandra.contactPoints) {
    if (!isHostPort(cp)) throw new UserError(`config: store.cassandra.contactPoints has ${JSON.stringify(cp)}, which is not a host or host:port`);
  }
  if ((cfg.serve.tlsCert === null) !== (cfg.serve.tlsKey === null)) {
    throw new UserError('config: serve.tlsCert and serve.tlsKey must be set together (or neither)');
  }
  return cfg;
}

/**
 * The runtime section as the libraries see it now: defaults < the file in $AETN_CONFIG < AETN_*
 * environment. Read at the point of use (not cached), so that a process can switch a setting
 * between two runs (the benchmarks compare GEMMs that way) and worker threads inherit it. The CLI
 * exports a --config file as $AETN_CONFIG, so its runtime keys reach the libraries too.
 */
export function runtimeSettings(env: NodeJS.ProcessEnv = process.env): AetnConfig['runtime'] {
  const cfg = structuredClone(DEFAULTS);
  const file = env.AETN_CONFIG;
  if (file) for (const [key, value] of readFile(file)) if (key.startsWith('runtime.')) apply(cfg, key, value, `config file ${file}`);
  for (const [key, spec] of Object.entries(SCHEMA)) {
    const v = env[spec.env];
    if (key.startsWith('runtime.') && v !== undefined && v !== '') apply(cfg, key, v, `environment variable ${spec.env}`);
  }
  return cfg.runtime;
}

/** The configuration as JSON with every secret masked, for `aetn config print` and logs. */
export function maskedConfig(cfg: AetnConfig): unknown {
  const copy = structuredClone(cfg) as AetnConfig;
  copy.serve.apiKeys = Object.fromEntries(
    Object.entries(cfg.serve.apiKeys).map(([k, scopes], i) => [`${k.slice(0, 2)}***${i}(${k.length} chars)`, scopes]),
  );
  return copy;
}

function readFile(file: string): [string, unknown][] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UserError(`config file ${file}: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw new UserError(`config file ${file}: expected a JSON object at the top level`);
  return flatten(raw);
}

function apply(cfg: AetnConfig, key: string, value: unknown, source: string): void {
  const spec = SCHEMA[key];
  if (!spec) {
    const known = Object.keys(SCHEMA).join(', ');
    throw new UserError(`${source}: unknown configuration key "${key}" (known keys: ${known})`);
  }
  const bad = (why: string) => new UserError(`${source}: "${key}" ${why} (got ${spec.secret ? '[redacted]' : JSON.stringify(value)})`);
  let v: unknown;
  switch (spec.kind) {
    case 'storeBackend':
      if (value !== 'lmdb' && value !== 'cassandra') throw bad('must be lmdb or cassandra');
      v = value;
      break;
    case 'consistency':
      if (typeof value !== 'string' || !(CASSANDRA_CONSISTENCIES as readonly string[]).includes(value)) throw bad(`must be one of ${CASSANDRA_CONSISTENCIES.join(', ')}`);
      v = value;
      break;
    case 'cqlName':
      // Unquoted CQL identifiers: what a keyspace name may be without quoting (48 characters at most).
      if (typeof value !== 'string' || !/^[a-zA-Z][a-zA-Z0-9_]{0,47}$/.test(value)) throw bad('must be a letter followed by at most 47 letters, digits or underscores');
      v = value.toLowerCase();
      break;
    case 'string':
      if (typeof value !== 'string' || value.length === 0) throw bad('must be a non-empty string');
      v = value;
      break;
    case 'nullableString':
      if (value !== null && (typeof value !== 'string' || value.length === 0)) throw bad('must be a non-empty string or null');
      v = value;
      break;
    case 'port':
    case 'nullablePort': {
      if (spec.kind === 'nullablePort' && (value === null || value === 'off')) {
        v = null;
        break;
      }
      const n = typeof value === 'string' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) throw bad('must be a port number 0-65535');
      v = n;
      break;
    }
    case 'int': {
      const n = typeof value === 'string' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) throw bad('must be a positive integer');
      v = n;
      break;
    }
    case 'nullableInt': {
      if (value === null) {
        v = null;
        break;
      }
      const n = typeof value === 'string' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) throw bad('must be a positive integer or null');
      v = n;
      break;
    }
    case 'backend':
      if (typeof value !== 'string' || !BACKENDS.includes(value.trim().toLowerCase())) throw bad(`must be one of ${BACKENDS.join(', ')}`);
      v = value.trim().toLowerCase();
      break;
    case 'nativeGemm': {
      const t = typeof value === 'string' ? value.trim().toLowerCase() : value;
      if (t === 'default' || t === '1' || t === 'on' || t === 'true' || t === true) v = 'default';
      else if (t === 'all') v = 'all';
      else if (t === 'off' || t === '0' || t === 'false' || t === false) v = 'off';
      else throw bad('must be default (or 1/on), all, or off (or 0)');
      break;
    }
    case 'autoOnOff': {
      const t = typeof value === 'string' ? value.trim().toLowerCase() : value;
      if (t === 'auto') v = 'auto';
      else if (t === 'on' || t === 'true' || t === '1' || t === true) v = 'on';
      else if (t === 'off' || t === 'false' || t === '0' || t === false) v = 'off';
      else throw bad('must be auto, on (or true/1) or off (or false/0)');
      break;
    }
    case 'weight': {
      const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > 100) throw bad('must be a number from 0 to 100');
      v = n;
      break;
    }
    case 'bool':
      if (value === true || value === 'true' || value === '1' || value === 'on') v = true;
      else if (value === false || value === 'false' || value === '0' || value === 'off') v = false;
      else throw bad('must be true or false (or 1/0, on/off)');
      break;
    case 'stringList':
      if (typeof value === 'string') v = value.split(',').map((s) => s.trim()).filter(Boolean);
      else if (Array.isArray(value) && value.every((s) => typeof s === 'string')) v = value;
      else throw bad('must be a list of strings or a comma-separated string');
      break;
    case 'logLevel':
      if (typeof value !== 'string' || !LOG_LEVELS.includes(value)) throw bad(`must be one of ${LOG_LEVELS.join(', ')}`);
      v = value;
      break;
    case 'keys':
      v = parseKeys(value, bad);
      break;
  }
  setPath(cfg, key, v);
}

/** API keys: a JSON object {key: [scopes]} or the env form "key1=scope,scope;key2=scope". */
function parseKeys(value: unknown, bad: (why: string) => Error): Record<string, string[]> {
  let obj: unknown = value;
  if (typeof value === 'string') {
    obj = Object.fromEntries(
      value.split(';').filter(Boolean).map((part) => {
        const eq = part.indexOf('=');
        if (eq <= 0) throw bad('must look like "key=scope,scope;key2=scope"');
        return [part.slice(0, eq).trim(), part.slice(eq + 1).split(',').map((s) => s.trim()).filter(Boolean)];
      }),
    );
  }
  if (!isObject(obj)) throw bad('must map API keys to lists of scopes');
  const out: Record<string, string[]> = {};
  for (const [k, scopes] of Object.entries(obj)) {
    if (k.length < 8) throw bad('has an API key shorter than 8 characters');
    if (!Array.isArray(scopes) || scopes.length === 0) throw bad('must give each API key a non-empty list of scopes');
    for (const s of scopes) {
      if (!(SCOPES as readonly string[]).includes(s)) throw bad(`has unknown scope "${String(s)}" (known: ${SCOPES.join(', ')})`);
    }
    out[k] = scopes as string[];
  }
  return out;
}

/** host, host:port or [v6]:port with a port in 1..65535. */
function isHostPort(s: string): boolean {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-_]*)(?::(\d{1,5}))?$/.exec(s);
  if (!m) return false;
  return m[2] === undefined || (Number(m[2]) >= 1 && Number(m[2]) <= 65535);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function flatten(obj: Record<string, unknown>, prefix = ''): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    // apiKeys is a map whose keys are data, not configuration keys.
    if (isObject(v) && !(key in SCHEMA)) out.push(...flatten(v, key));
    else out.push([key, v]);
  }
  return out;
}

function setPath(cfg: AetnConfig, key: string, value: unknown): void {
  const parts = key.split('.');
  let o = cfg as unknown as Record<string, unknown>;
  for (const p of parts.slice(0, -1)) o = o[p] as Record<string, unknown>;
  o[parts[parts.length - 1]!] = value;
}
