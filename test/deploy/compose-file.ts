// Reading docker-compose.yml for the tests that run its processes directly: a service's command
// line as written in the file, and its resolved environment and image as the compose tool prints
// them (`config`), without a YAML library.
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const exec = promisify(execFile);
export const COMPOSE_KEYS = 'ranker-key-0001=vectors:read;adtool-key-0001=vectors:read,audience:write';

export function composeTool(): string[] {
  if (spawnSync('docker', ['compose', 'version']).status === 0) return ['docker', 'compose'];
  if (spawnSync('docker-compose', ['version']).status === 0) return ['docker-compose'];
  throw new Error('neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)');
}

/** The `command: [...]` of a service, as written in docker-compose.yml (one JSON array per line). */
export function commandOf(service: string): string[] {
  const text = readFileSync('docker-compose.yml', 'utf8');
  const at = text.indexOf(`\n  ${service}:\n`);
  if (at < 0) throw new Error(`no service ${service} in docker-compose.yml`);
  const block = text.slice(at);
  const m = /\n    command: (\[.*\])\n/.exec(block);
  if (!m) throw new Error(`no command for service ${service}`);
  return JSON.parse(m[1]!) as string[];
}

export interface ResolvedService {
  image: string | undefined;
  environment: Record<string, string>;
  profiles: string[];
  dependsOn: string[];
}

/** Every service of the resolved file (`config` with the given profiles), by name. */
export async function resolvedServices(profiles: string[] = []): Promise<Map<string, ResolvedService>> {
  const [cmd, ...pre] = composeTool();
  const args = [...pre, ...profiles.flatMap((p) => ['--profile', p]), 'config'];
  const { stdout } = await exec(cmd!, args, { env: { ...process.env, AETN_API_KEYS: COMPOSE_KEYS } });
  const lines = stdout.split('\n');
  const out = new Map<string, ResolvedService>();
  let inServices = false;
  let cur: ResolvedService | undefined;
  let section = '';
  for (const line of lines) {
    if (/^\S/.test(line)) {
      inServices = line === 'services:';
      cur = undefined;
      continue;
    }
    if (!inServices) continue;
    let m = /^ {2}(\S+):$/.exec(line);
    if (m) {
      cur = { image: undefined, environment: {}, profiles: [], dependsOn: [] };
      out.set(m[1]!, cur);
      continue;
    }
    if (!cur) continue;
    m = /^ {4}(\S+):(?: (.*))?$/.exec(line);
    if (m) {
      section = m[1]!;
      if (section === 'image') cur.image = m[2];
      continue;
    }
    if (section === 'environment' && (m = /^ {6}(\S+): (.*)$/.exec(line))) cur.environment[m[1]!] = m[2]!.replace(/^'(.*)'$/, '$1');
    else if (section === 'profiles' && (m = /^ {4}- (.*)$/.exec(line))) cur.profiles.push(m[1]!);
    else if (section === 'depends_on' && (m = /^ {6}(\S+):$/.exec(line))) cur.dependsOn.push(m[1]!);
  }
  return out;
}
