// docker-compose.yml cannot be run here (no Docker engine), so: the compose tool validates it, and
// the processes it starts are run directly with the exact command lines it gives them.
import { afterAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureGoTool } from '../tools/go-tools.js';
import { commandOf, composeTool, COMPOSE_KEYS, resolvedServices } from './compose-file.js';

const exec = promisify(execFile);
const KEYS = COMPOSE_KEYS;

let serve: ChildProcess | undefined;
afterAll(() => {
  if (serve && serve.exitCode === null) serve.kill('SIGKILL');
});

describe('docker-compose.yml', () => {
  it('is valid and has kafka, batch, serve, realtime (and a demo producer)', async () => {
    const [cmd, ...pre] = composeTool();
    const { stdout } = await exec(cmd!, [...pre, 'config', '--services'], { env: { ...process.env, AETN_API_KEYS: KEYS } });
    const CLUSTER = ['cassandra-init', 'cassandra1', 'cassandra2', 'cassandra3', 'embed0', 'embed1', 'index', 'models', 'realtime1', 'realtime2', 'serve1', 'serve2'];
    expect(stdout.split('\n').filter(Boolean).sort()).toEqual(['batch', 'kafka', 'producer', 'realtime', 'serve', ...CLUSTER].sort());
    await exec(cmd!, [...pre, 'config', '-q'], { env: { ...process.env, AETN_API_KEYS: KEYS } });
    // API keys are required, never defaulted in the file.
    const env = { ...process.env };
    delete env.AETN_API_KEYS;
    await expect(exec(cmd!, [...pre, 'config', '-q'], { env })).rejects.toThrow(/AETN_API_KEYS/);
  });

  it('profile cluster: 3 nodes of the official Cassandra image, the schema job, embedding shards, the index job, 2 serving replicas and 2 realtime consumers of one group', async () => {
    const all = await resolvedServices(['cluster']);
    const cluster = [...all].filter(([, s]) => s.profiles.includes('cluster'));
    const nodes = cluster.filter(([, s]) => s.image?.startsWith('cassandra:'));
    expect(nodes.map(([n]) => n)).toEqual(['cassandra1', 'cassandra2', 'cassandra3']);
    for (const [, s] of nodes) {
      expect(s.image).toBe('cassandra:5.0');
      expect(s.environment.CASSANDRA_SEEDS).toBe('cassandra1');
      expect(s.environment.CASSANDRA_DC).toBe('datacenter1');
    }
    // The one-host services stay out of the profile; the cluster's are all in it.
    for (const n of ['batch', 'serve', 'realtime']) expect(all.get(n)!.profiles).toEqual([]);
    const apps = cluster.filter(([, s]) => s.image === 'aetn:local');
    expect(apps.map(([n]) => n).sort()).toEqual(['cassandra-init', 'embed0', 'embed1', 'index', 'models', 'realtime1', 'realtime2', 'serve1', 'serve2']);
    for (const [n, s] of apps) {
      if (n === 'models') continue; // trains files only; its one-host store is a by-product
      expect(s.environment.AETN_STORE_BACKEND, n).toBe('cassandra');
      expect(s.environment.AETN_CASSANDRA_CONTACT_POINTS.split(','), n).toEqual(['cassandra1:9042', 'cassandra2:9042', 'cassandra3:9042']);
      expect(s.environment.AETN_CASSANDRA_LOCAL_DC, n).toBe('datacenter1');
    }
    expect(commandOf('embed0').slice(-2)).toEqual(['--shard', '0/2']);
    expect(commandOf('embed1').slice(-2)).toEqual(['--shard', '1/2']);
    expect(all.get('index')!.dependsOn.sort()).toEqual(['embed0', 'embed1']);
    for (const n of ['serve1', 'serve2']) expect(all.get(n)!.dependsOn).toEqual(['index']);
    // One consumer group: neither consumer overrides the group id, and both run the same line.
    expect(commandOf('realtime1')).toEqual(commandOf('realtime2'));
    expect(commandOf('serve1')).toEqual(commandOf('serve2'));
    for (const n of ['realtime1', 'realtime2']) {
      expect(all.get(n)!.environment.AETN_KAFKA_GROUP_ID).toBeUndefined();
      expect(commandOf(n)).not.toContain('--group');
      expect(all.get(n)!.dependsOn.sort()).toEqual(['cassandra-init', 'kafka', 'models']);
    }
  });

  it('the batch and serve processes run with the command lines compose gives them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aetn-compose-'));
    const env = { ...process.env, AETN_STORE_DIR: join(dir, 'store'), AETN_API_KEYS: KEYS, AETN_PROGRESS: '0', AETN_LOG_LEVEL: 'warn' };
    // The batch job's line, pointed at a temp dir and shrunk (later flags win) so it runs in seconds.
    const batch = commandOf('batch').map((a) => (a === '/data' ? dir : a));
    await exec(process.execPath, ['bin/aetn.js', ...batch, '--users', '600', '--size', 'tiny', '--epochs', '1', '--head-epochs', '1'], { env });
    // The realtime service reads the head the batch job writes at its default (small) size.
    expect(commandOf('realtime')).toContain('/data/models/head-small');

    const serveCmd = [...commandOf('serve'), '--host', '127.0.0.1', '--port', '0', '--metrics-port', '0'];
    serve = spawn(process.execPath, ['bin/aetn.js', ...serveCmd], { env });
    let out = '';
    serve.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const address = await new Promise<string>((resolve, reject) => {
      const t = setInterval(() => {
        const m = /listening on (\S+)/.exec(out);
        if (m) {
          clearInterval(t);
          resolve(m[1]!);
        }
      }, 100);
      serve!.once('exit', (c) => reject(new Error(`serve exited ${c}`)));
    });
    const grpcurl = await ensureGoTool('grpcurl');
    const { stdout } = await exec(grpcurl, ['-plaintext', address, 'grpc.health.v1.Health/Check']);
    expect(stdout).toContain('SERVING');
    const exited = new Promise<number | null>((r) => serve!.once('exit', (c) => r(c)));
    serve.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
