// docker-compose.yml cannot be run here (no Docker engine), so: the compose tool validates it, and
// the processes it starts are run directly with the exact command lines it gives them.
import { afterAll, describe, expect, it } from 'vitest';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureGoTool } from '../tools/go-tools.js';

const exec = promisify(execFile);
const KEYS = 'ranker-key-0001=vectors:read;adtool-key-0001=vectors:read,audience:write';

function composeTool(): string[] {
  if (spawnSync('docker', ['compose', 'version']).status === 0) return ['docker', 'compose'];
  if (spawnSync('docker-compose', ['version']).status === 0) return ['docker-compose'];
  throw new Error('neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)');
}

/** The `command: [...]` of a service, as written in docker-compose.yml (one JSON array per line). */
function commandOf(service: string): string[] {
  const text = readFileSync('docker-compose.yml', 'utf8');
  const block = text.slice(text.indexOf(`\n  ${service}:\n`));
  const m = /\n    command: (\[.*\])\n/.exec(block);
  if (!m) throw new Error(`no command for service ${service}`);
  return JSON.parse(m[1]!) as string[];
}

let serve: ChildProcess | undefined;
afterAll(() => {
  if (serve && serve.exitCode === null) serve.kill('SIGKILL');
});

describe('docker-compose.yml', () => {
  it('is valid and has kafka, batch, serve, realtime (and a demo producer)', async () => {
    const [cmd, ...pre] = composeTool();
    const { stdout } = await exec(cmd!, [...pre, 'config', '--services'], { env: { ...process.env, AETN_API_KEYS: KEYS } });
    expect(stdout.split('\n').filter(Boolean).sort()).toEqual(['batch', 'kafka', 'producer', 'realtime', 'serve']);
    await exec(cmd!, [...pre, 'config', '-q'], { env: { ...process.env, AETN_API_KEYS: KEYS } });
    // API keys are required, never defaulted in the file.
    const env = { ...process.env };
    delete env.AETN_API_KEYS;
    await expect(exec(cmd!, [...pre, 'config', '-q'], { env })).rejects.toThrow(/AETN_API_KEYS/);
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
