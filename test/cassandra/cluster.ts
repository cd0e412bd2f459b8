// Real Apache Cassandra 5.0 nodes for the tests (and the cluster test): started from the Maven
// Central jars that bench/engines/setup.sh fetches into .cache/engines (once; later runs reuse
// them), each node a foreground JVM from bench/engines/cassandra-node.sh with a small heap.
//
// A cluster of N nodes listens on 127.A.B.1 .. 127.A.B.N (Linux routes all of 127/8 to loopback),
// with A.B picked so that no other cluster on this host (another test run, a bench) holds those
// addresses; each node has its own native (CQL) port and JMX port. Every node is a seed, so the
// nodes of a new, empty cluster start side by side with no bootstrap streaming. `start` returns
// when `nodetool status` shows every node UN (up, normal); `stop` kills them and deletes their data.
//
//   const c = await CassandraCluster.start({ nodes: 1 });   c.contactPoints -> ['127.A.B.1:PORT']
//   await c.killNode(2);  await c.stop();
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { runProcess } from '../spawn.js';

const ROOT = join(import.meta.dirname, '..', '..');
const ENGINES = join(ROOT, 'bench', 'engines');
/** Where the jars are cached (git ignores .cache/); AETN_TEST_CASSANDRA_ENGINES picks another. */
export const ENGINES_DIR = process.env.AETN_TEST_CASSANDRA_ENGINES ?? join(ROOT, '.cache', 'engines');
const CASSANDRA_VERSION = '5.0.9';

export interface ClusterOptions {
  nodes?: number;
  /** JVM heap per node (default 1G). */
  heap?: string;
  /** Give up waiting for the nodes after this long (default 240 s). */
  timeoutMs?: number;
  /** Where node directories go (default a new temp dir, deleted by stop()). */
  dir?: string;
}

export interface CassandraNode {
  index: number;
  address: string;
  nativePort: number;
  jmxPort: number;
  dir: string;
  proc: ChildProcess | undefined;
}

/** Whether the jars of CASSANDRA_VERSION are in ENGINES_DIR already. */
export function cassandraJarsCached(): boolean {
  return existsSync(join(ENGINES_DIR, 'cassandra', 'lib', `cassandra-all-${CASSANDRA_VERSION}.jar`));
}

/**
 * Fetches the Cassandra jars into ENGINES_DIR unless they are there (needs Java 17 + Maven; a
 * first fetch takes a minute or more). Asynchronous on purpose: a vitest worker blocked that long
 * misses its own RPC deadline ("Timeout calling onTaskUpdate") and the run fails. The global
 * setup fetches them once, before any worker starts, when a selected test file starts a cluster.
 */
export async function ensureCassandraJars(): Promise<void> {
  if (cassandraJarsCached()) return;
  const r = await runProcess(join(ENGINES, 'setup.sh'), [ENGINES_DIR, 'cassandra-jars'], { env: { ...process.env, CASSANDRA_VERSION } });
  if (r.status !== 0) throw new Error(`fetching the Cassandra ${CASSANDRA_VERSION} jars failed (exit ${r.status}): ${r.error?.message ?? ''}${(r.stderr || r.stdout).slice(-4000)}`);
}

/** Whether Java and (for a first fetch) Maven are here: tests that need Cassandra skip otherwise. */
export function cassandraAvailable(): { ok: true } | { ok: false; why: string } {
  if (process.env.AETN_TEST_CASSANDRA === '0') return { ok: false, why: 'AETN_TEST_CASSANDRA=0' };
  if (spawnSync('java', ['-version']).status !== 0) return { ok: false, why: 'no java on PATH' };
  if (!cassandraJarsCached() && spawnSync('mvn', ['-v']).status !== 0) return { ok: false, why: 'no Cassandra jars cached and no mvn to fetch them' };
  return { ok: true };
}

async function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ host, port: 0 }, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export class CassandraCluster {
  private stopped = false;

  private constructor(
    readonly nodes: CassandraNode[],
    readonly dir: string,
    private readonly ownsDir: boolean,
    private readonly heap: string,
  ) {}

  /** `address:nativePort` of every node. */
  get contactPoints(): string[] {
    return this.nodes.map((n) => `${n.address}:${n.nativePort}`);
  }

  static async start(opts: ClusterOptions = {}): Promise<CassandraCluster> {
    const n = opts.nodes ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 9) throw new Error(`nodes must be 1..9, got ${n}`);
    await ensureCassandraJars();
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'aetn-cassandra-'));
    // Addresses 127.A.B.i with every storage port (7000) free: another cluster may be running.
    let prefix: string | undefined;
    for (let tries = 0; tries < 50 && !prefix; tries++) {
      const a = 100 + ((process.pid + tries * 7919 + Math.floor(Math.random() * 1000)) % 150);
      const b = Math.floor(Math.random() * 250) + 1;
      const p = `127.${a}.${b}`;
      let free = true;
      for (let i = 1; i <= n && free; i++) free = await canListen(`${p}.${i}`, 7000);
      if (free) prefix = p;
    }
    if (!prefix) throw new Error('no free loopback addresses for Cassandra nodes');
    const nodes: CassandraNode[] = [];
    for (let i = 1; i <= n; i++) {
      const address = `${prefix}.${i}`;
      let nativePort = 0;
      // JMX listens on 127.0.0.1 at the native port + 100 (cassandra-node.sh): both must be free.
      for (let t = 0; t < 50; t++) {
        const p = await freePort(address);
        if (p + 100 < 65536 && (await canListen('127.0.0.1', p + 100))) {
          nativePort = p;
          break;
        }
      }
      if (!nativePort) throw new Error('no free native/JMX port pair');
      nodes.push({ index: i, address, nativePort, jmxPort: nativePort + 100, dir: join(dir, `n${i}`), proc: undefined });
    }
    const c = new CassandraCluster(nodes, dir, opts.dir === undefined, opts.heap ?? '1G');
    try {
      for (const node of nodes) c.spawnNode(node);
      await c.waitUp(opts.timeoutMs ?? 240_000);
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  private seeds(): string {
    return this.nodes.map((n) => `${n.address}:7000`).join(',');
  }

  private spawnNode(node: CassandraNode): void {
    const log = openSync(join(this.dir, `n${node.index}.out`), 'a');
    try {
      node.proc = spawn('nice', ['-n', '5', join(ENGINES, 'cassandra-node.sh'), ENGINES_DIR, node.dir, node.address, this.seeds(), String(node.nativePort), this.heap], {
        stdio: ['ignore', log, log],
        // Its own process group: stop() ends the JVM that the script execs, and nothing else.
        detached: true,
      });
    } finally {
      closeSync(log);
    }
    node.proc.unref();
  }

  /** Waits until every running node is UN in `nodetool status` of each running node. */
  async waitUp(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const live = () => this.nodes.filter((n) => n.proc && n.proc.exitCode === null && n.proc.signalCode === null);
    for (;;) {
      for (const n of this.nodes) {
        if (n.proc && (n.proc.exitCode !== null || n.proc.signalCode !== null)) throw new Error(`Cassandra node ${n.address} exited (${n.proc.exitCode ?? n.proc.signalCode}): ${this.tail(n)}`);
      }
      const up = live();
      let ok = up.length > 0;
      for (const n of up) {
        if (!ok) break;
        if (!(await this.portOpen(n.address, n.nativePort))) ok = false;
      }
      if (ok) {
        const st = await this.nodetool(up[0]!, 'status');
        const un = (st.out.match(/^UN\s/gm) ?? []).length;
        if (st.ok && un >= up.length) return;
      }
      if (Date.now() > deadline) throw new Error(`Cassandra nodes not all UN after ${timeoutMs} ms: ${this.nodes.map((n) => this.tail(n)).join('\n')}`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  private async portOpen(host: string, port: number): Promise<boolean> {
    const { connect } = await import('node:net');
    return new Promise((resolve) => {
      const s = connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.setTimeout(1000, () => {
        s.destroy();
        resolve(false);
      });
    });
  }

  /** Runs nodetool against a node (a JVM start each time: seconds; asynchronous, like every long step here). */
  async nodetool(node: CassandraNode, ...cmd: string[]): Promise<{ ok: boolean; out: string }> {
    const r = await runProcess('nice', ['-n', '5', join(ENGINES, 'nodetool.sh'), ENGINES_DIR, String(node.jmxPort), ...cmd], { timeoutMs: 60_000 });
    return { ok: r.status === 0, out: r.stdout + r.stderr };
  }

  private tail(n: CassandraNode): string {
    const f = join(this.dir, `n${n.index}.out`);
    if (!existsSync(f)) return `${n.address}: no output`;
    const lines = readFileSync(f, 'utf8').trim().split('\n');
    return `${n.address}: ${lines.slice(-5).join(' | ')}`;
  }

  /** Kills one node's JVM (SIGKILL, as a crash): the others keep serving at RF > 1. */
  async killNode(index: number): Promise<void> {
    const n = this.nodes[index - 1];
    if (!n?.proc) return;
    await this.killProc(n.proc, 'SIGKILL');
    n.proc = undefined;
  }

  /**
   * Freezes one node's JVM (SIGSTOP) for `ms`, then lets it run again (SIGCONT): a stall such as a
   * long GC pause or a starved host, during which the node accepts no request and answers none.
   */
  async pauseNode(index: number, ms: number): Promise<void> {
    const n = this.nodes[index - 1];
    if (!n?.proc) throw new Error(`node ${index} is not running`);
    process.kill(-n.proc.pid!, 'SIGSTOP');
    try {
      await new Promise((r) => setTimeout(r, ms));
    } finally {
      process.kill(-n.proc.pid!, 'SIGCONT');
    }
  }

  private async killProc(p: ChildProcess, sig: NodeJS.Signals): Promise<void> {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const done = new Promise<void>((r) => p.once('exit', () => r()));
    try {
      process.kill(-p.pid!, sig);
    } catch {
      return;
    }
    const t = setTimeout(() => {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 20_000);
    await done;
    clearTimeout(t);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(this.nodes.map(async (n) => (n.proc ? this.killProc(n.proc, 'SIGTERM') : undefined)));
    for (const n of this.nodes) n.proc = undefined;
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}
