import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { DEFAULTS, loadConfig, maskedConfig, runtimeSettings } from '../../src/config/config.js';

const dir = mkdtempSync(join(tmpdir(), 'aetn-config-'));
function file(obj: unknown): string {
  const f = join(dir, `${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(f, typeof obj === 'string' ? obj : JSON.stringify(obj));
  return f;
}

describe('configuration', () => {
  it('defaults when nothing is set', () => {
    expect(loadConfig({ env: {} })).toEqual(DEFAULTS);
  });

  it('layers file < environment < overrides', () => {
    const f = file({ serve: { port: 7000, host: '0.0.0.0' }, kafka: { brokers: ['a:9092'] } });
    const cfg = loadConfig({ file: f, env: { AETN_SERVE_PORT: '7001' }, overrides: { 'kafka.topic': 'x' } });
    expect(cfg.serve.port).toBe(7001);
    expect(cfg.serve.host).toBe('0.0.0.0');
    expect(cfg.kafka.brokers).toEqual(['a:9092']);
    expect(cfg.kafka.topic).toBe('x');
  });

  it('names the bad key', () => {
    expect(() => loadConfig({ file: file({ serve: { prot: 1 } }), env: {} })).toThrow(/unknown configuration key "serve.prot"/);
    expect(() => loadConfig({ env: { AETN_SERVE_PORT: 'abc' } })).toThrow(/AETN_SERVE_PORT: "serve.port" must be a port/);
    expect(() => loadConfig({ env: { AETN_LOG_LEVEL: 'loud' } })).toThrow(/logLevel/);
    expect(() => loadConfig({ file: file('{not json'), env: {} })).toThrow(/config file .*json/i);
    expect(() => loadConfig({ env: { AETN_TLS_CERT: '/x.pem' } })).toThrow(/tlsCert and serve.tlsKey/);
  });

  it('parses API keys with scopes and never echoes a bad key', () => {
    const cfg = loadConfig({ env: { AETN_API_KEYS: 'ranker-key-123=vectors:read;adtool-key-456=vectors:read,audience:write' } });
    expect(cfg.serve.apiKeys).toEqual({ 'ranker-key-123': ['vectors:read'], 'adtool-key-456': ['vectors:read', 'audience:write'] });
    let msg = '';
    try {
      loadConfig({ env: { AETN_API_KEYS: 'secret-key-789=root' } });
    } catch (err) {
      msg = (err as Error).message;
    }
    expect(msg).toMatch(/unknown scope "root"/);
    expect(msg).not.toContain('secret-key-789');
  });

  it('holds the runtime switches of the libraries, read from the environment where they are used', () => {
    const cfg = loadConfig({ env: { AETN_BACKEND: 'CPU', AETN_NATIVE_GEMM: '0', AETN_HEAD_HOST: 'false', AETN_HNSWLIB_ADDON: '/opt/addon.node', AETN_WASM_NAIVE_TRANSPOSED_MATMUL: '1', AETN_MEMORY_BUDGET_MIB: '512', AETN_GPU_MEMORY_BUDGET_MIB: '65536', AETN_EMBED_OVERLAP: 'off', AETN_PROGRESS: '0' } });
    expect(cfg.runtime).toEqual({ backend: 'cpu', nativeGemm: 'off', headHost: false, hnswlibAddon: '/opt/addon.node', wasmNaiveTransposedMatmul: true, memoryBudgetMiB: 512, gpuMemoryBudgetMiB: 65536, embedOverlap: 'off', progress: false });
    expect(runtimeSettings({})).toMatchObject({ gpuMemoryBudgetMiB: null, embedOverlap: 'auto' });
    expect(runtimeSettings({ AETN_EMBED_OVERLAP: 'true' }).embedOverlap).toBe('on');
    expect(runtimeSettings({ AETN_NATIVE_GEMM: 'all' }).nativeGemm).toBe('all');
    expect(runtimeSettings({ AETN_NATIVE_GEMM: '1' }).nativeGemm).toBe('default');
    expect(runtimeSettings({}).backend).toBe('wasm');
    // A file named by AETN_CONFIG reaches the libraries; the environment still wins over it.
    const f = file({ runtime: { backend: 'cpu', headHost: false } });
    expect(runtimeSettings({ AETN_CONFIG: f })).toMatchObject({ backend: 'cpu', headHost: false });
    expect(runtimeSettings({ AETN_CONFIG: f, AETN_BACKEND: 'wasm' }).backend).toBe('wasm');
    expect(() => runtimeSettings({ AETN_BACKEND: 'cuda' })).toThrow(/AETN_BACKEND: "runtime.backend" must be one of wasm, cpu, tensorflow/);
    expect(() => runtimeSettings({ AETN_NATIVE_GEMM: 'fast' })).toThrow(/AETN_NATIVE_GEMM: "runtime.nativeGemm" must be/);
    expect(() => runtimeSettings({ AETN_HEAD_HOST: 'maybe' })).toThrow(/AETN_HEAD_HOST: "runtime.headHost" must be true or false/);
    expect(() => runtimeSettings({ AETN_MEMORY_BUDGET_MIB: 'lots' })).toThrow(/AETN_MEMORY_BUDGET_MIB/);
    expect(() => runtimeSettings({ AETN_GPU_MEMORY_BUDGET_MIB: '-1' })).toThrow(/AETN_GPU_MEMORY_BUDGET_MIB: "runtime.gpuMemoryBudgetMiB" must be a positive integer/);
    expect(() => runtimeSettings({ AETN_EMBED_OVERLAP: 'sometimes' })).toThrow(/AETN_EMBED_OVERLAP: "runtime.embedOverlap" must be auto, on .* or off/);
  });

  it('selects the store backend and configures the Cassandra session (file and environment)', () => {
    expect(DEFAULTS.store).toEqual({ backend: 'lmdb', cassandra: { contactPoints: ['127.0.0.1:9042'], localDataCenter: 'datacenter1', keyspace: 'aetn', replicationFactor: 3, consistency: 'localQuorum', requestTimeoutMs: 12_000 } });
    expect(DEFAULTS.serve.indexPollSeconds).toBe(10);
    const f = file({ store: { backend: 'cassandra', cassandra: { contactPoints: ['10.0.0.1', 'cass2:9142'], keyspace: 'Aetn_Prod', replicationFactor: 3 } }, serve: { indexPollSeconds: 2 } });
    const cfg = loadConfig({ file: f, env: { AETN_CASSANDRA_CONSISTENCY: 'quorum', AETN_CASSANDRA_LOCAL_DC: 'dc2' } });
    expect(cfg.store).toEqual({ backend: 'cassandra', cassandra: { contactPoints: ['10.0.0.1', 'cass2:9142'], localDataCenter: 'dc2', keyspace: 'aetn_prod', replicationFactor: 3, consistency: 'quorum', requestTimeoutMs: 12_000 } });
    expect(cfg.serve.indexPollSeconds).toBe(2);
    expect(loadConfig({ env: { AETN_STORE_BACKEND: 'cassandra', AETN_CASSANDRA_CONTACT_POINTS: '127.0.0.2:9043,[::1]:9042' } }).store.cassandra.contactPoints).toEqual(['127.0.0.2:9043', '[::1]:9042']);
    expect(() => loadConfig({ env: { AETN_STORE_BACKEND: 'redis' } })).toThrow(/AETN_STORE_BACKEND: "store.backend" must be lmdb or cassandra/);
    expect(() => loadConfig({ env: { AETN_CASSANDRA_CONSISTENCY: 'TWO' } })).toThrow(/"store.cassandra.consistency" must be one of one, localOne, quorum, localQuorum, all/);
    expect(() => loadConfig({ env: { AETN_CASSANDRA_KEYSPACE: 'my-keyspace' } })).toThrow(/"store.cassandra.keyspace" must be a letter followed by/);
    expect(() => loadConfig({ env: { AETN_CASSANDRA_REPLICATION_FACTOR: '0' } })).toThrow(/replicationFactor" must be a positive integer/);
    expect(() => loadConfig({ env: { AETN_CASSANDRA_CONTACT_POINTS: 'host:99999' } })).toThrow(/contactPoints has "host:99999", which is not a host or host:port/);
    expect(() => loadConfig({ env: { AETN_CASSANDRA_CONTACT_POINTS: ' , ' } })).toThrow(/contactPoints is empty/);
    expect(() => loadConfig({ file: file({ store: { cassandra: { port: 1 } } }), env: {} })).toThrow(/unknown configuration key "store.cassandra.port"/);
  });

  it('combined weights, short-term horizon, audience floors and the admin scope', () => {
    const cfg = loadConfig({
      env: { AETN_COMBINED_LONG_WEIGHT: '0.6', AETN_COMBINED_SHORT_WEIGHT: '0.8', AETN_SHORT_TERM_HORIZON_MS: '3600000', AETN_LOOKALIKE_MIN_SEEDS: '200', AETN_LOOKALIKE_MIN_AUDIENCE: '1000', AETN_API_KEYS: 'privacy-key-1=admin' },
    });
    expect(cfg.serve).toMatchObject({ combinedLongWeight: 0.6, combinedShortWeight: 0.8, shortTermHorizonMs: 3_600_000, lookalikeMinSeeds: 200, lookalikeMinAudience: 1000, apiKeys: { 'privacy-key-1': ['admin'] } });
    expect(DEFAULTS.serve).toMatchObject({ combinedLongWeight: 0.8, combinedShortWeight: 0.6, shortTermHorizonMs: 7 * 86_400_000, lookalikeMinSeeds: 50, lookalikeMinAudience: 100 });
    expect(() => loadConfig({ env: { AETN_COMBINED_SHORT_WEIGHT: '-1' } })).toThrow(/serve.combinedShortWeight" must be a number from 0 to 100/);
    expect(() => loadConfig({ env: { AETN_COMBINED_LONG_WEIGHT: 'abc' } })).toThrow(/serve.combinedLongWeight/);
    expect(() => loadConfig({ file: file({ serve: { combinedLongWeight: 0, combinedShortWeight: 0 } }), env: {} })).toThrow(/both 0/);
    expect(() => loadConfig({ env: { AETN_LOOKALIKE_MIN_SEEDS: '0' } })).toThrow(/serve.lookalikeMinSeeds" must be a positive integer/);
  });

  it('masks secrets when printed', () => {
    const cfg = loadConfig({ env: { AETN_API_KEYS: 'ranker-key-123=vectors:read' } });
    const text = JSON.stringify(maskedConfig(cfg));
    expect(text).not.toContain('ranker-key-123');
    expect(text).toContain('vectors:read');
  });

  it('`aetn config print` prints the masked configuration and fails on a bad key', () => {
    const out = execFileSync('node', ['bin/aetn.js', 'config', 'print'], { env: { ...process.env, AETN_API_KEYS: 'ranker-key-123=vectors:read', AETN_SERVE_PORT: '6001' } }).toString();
    expect(JSON.parse(out).serve.port).toBe(6001);
    // Every setting is printed, the runtime switches included.
    const printed = JSON.parse(execFileSync('node', ['bin/aetn.js', 'config', 'print'], { env: { ...process.env, AETN_NATIVE_GEMM: 'off', AETN_HEAD_HOST: '0' } }).toString());
    expect(Object.keys(printed.runtime).sort()).toEqual(Object.keys(DEFAULTS.runtime).sort());
    expect(printed.runtime).toMatchObject({ nativeGemm: 'off', headHost: false, progress: false });
    expect(printed.store).toEqual(DEFAULTS.store);
    const cass = JSON.parse(execFileSync('node', ['bin/aetn.js', 'config', 'print'], { env: { ...process.env, AETN_STORE_BACKEND: 'cassandra', AETN_CASSANDRA_CONTACT_POINTS: 'c1:9042,c2:9042' } }).toString());
    expect(cass.store).toMatchObject({ backend: 'cassandra', cassandra: { contactPoints: ['c1:9042', 'c2:9042'], keyspace: 'aetn' } });
    expect(JSON.parse(out).serve).toMatchObject({ port: 6001, combinedLongWeight: 0.8, combinedShortWeight: 0.6, shortTermHorizonMs: 604_800_000, lookalikeMinSeeds: 50, lookalikeMinAudience: 100 });
    expect(out).not.toContain('ranker-key-123');
    const bad = spawnSync('node', ['bin/aetn.js', 'config', 'print', '--config', file({ kafka: { brokerz: [] } })]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr.toString()).toMatch(/kafka.brokerz/);
  });
});
