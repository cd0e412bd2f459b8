// The gRPC server: both services, health, reflection, auth, metrics, TLS and graceful shutdown.
import type { DescService } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { UserVectorService } from '../gen/aetn/v1/user_vector_pb.js';
import { AudienceService } from '../gen/aetn/v1/audience_pb.js';
import { AdminService } from '../gen/aetn/v1/admin_pb.js';
import { adminHandlers } from './admin.js';
import { child } from '../util/log.js';
import { routeGrpcLogs } from './grpc-log.js';
import { audienceHandlers, type AudienceOptions } from './audience.js';
import type { ApiKeyAuth } from './auth.js';
import type { ServingBackend } from './backend.js';
import { Health } from './health.js';
import { RpcMetrics } from './metrics.js';
import { addReflection } from './reflection.js';
import { bindService, InflightCounter } from './rpc.js';
import { userVectorHandlers, type UserVectorOptions } from './user-vectors.js';

export interface ServerOptions {
  backend: ServingBackend;
  auth: ApiKeyAuth;
  host?: string;
  /** 0 picks a free port. */
  port: number;
  tls?: { cert: Buffer; key: Buffer };
  metrics?: RpcMetrics;
  log?: Logger;
  audience?: AudienceOptions;
  /** Combined-vector weights, the short-term horizon and the clock of UserVectorService. */
  vectors?: UserVectorOptions;
  /** Further services (e.g. EventService) bound next to ours, with health and reflection for them. */
  extraServices?: { register(server: grpc.Server): void; services: DescService[] };
}

export interface RunningServer {
  readonly port: number;
  readonly address: string;
  readonly health: Health;
  readonly metrics: RpcMetrics;
  readonly inflight: InflightCounter;
  /**
   * Graceful stop: health turns NOT_SERVING, new calls are refused, calls in flight may finish
   * within `timeoutMs`; then whatever is left (e.g. health Watch streams) is cut.
   */
  shutdown(timeoutMs?: number): Promise<{ drained: boolean; cutCalls: number }>;
}

export const SERVICE_NAMES = [UserVectorService.typeName, AudienceService.typeName, AdminService.typeName];

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const log = opts.log ?? child('serve');
  routeGrpcLogs(log);
  const metrics = opts.metrics ?? new RpcMetrics();
  const inflight = new InflightCounter();
  const server = new grpc.Server({
    // Look-alike requests may carry up to a million exclusions.
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
  const common = { auth: opts.auth, log, metrics, inflight };
  bindService(server, UserVectorService, userVectorHandlers(opts.backend, opts.vectors), { ...common, scope: 'vectors:read' });
  bindService(server, AudienceService, audienceHandlers(opts.backend, opts.audience), { ...common, scope: 'audience:write' });
  bindService(server, AdminService, adminHandlers(opts.backend), { ...common, scope: 'admin' });
  opts.extraServices?.register(server);
  const extra = opts.extraServices?.services ?? [];
  const health = new Health([...SERVICE_NAMES, ...extra.map((d) => d.typeName)]);
  health.addToServer(server);
  addReflection(server, [UserVectorService, AudienceService, AdminService, ...extra]);

  const creds = opts.tls
    ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: opts.tls.cert, private_key: opts.tls.key }], false)
    : grpc.ServerCredentials.createInsecure();
  const host = opts.host ?? '127.0.0.1';
  const bindHost = host.includes(':') ? `[${host}]` : host;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${bindHost}:${opts.port}`, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  opts.backend.start();
  health.setAll('SERVING');
  log.info({ host, port, tls: Boolean(opts.tls), authDisabled: opts.auth.disabled, apiKeys: opts.auth.keyCount }, 'gRPC server listening');

  let stopping: Promise<{ drained: boolean; cutCalls: number }> | undefined;
  const shutdown = (timeoutMs = 10_000) => {
    stopping ??= (async () => {
      health.setAll('NOT_SERVING');
      log.info({ inflight: inflight.count, timeoutMs }, 'draining');
      const closed = new Promise<void>((r) => server.tryShutdown(() => r()));
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
      // Our own calls are what must drain; health Watch streams never end by themselves.
      const t0 = Date.now();
      const result = await Promise.race([inflight.idle().then(() => 'idle' as const), timeout]);
      clearTimeout(timer);
      const cutCalls = inflight.count;
      // The last answers are written but maybe not flushed: let the sessions close by themselves
      // for a moment (they do unless a health Watch stream holds one open), then cut what is left.
      const grace = Math.max(0, Math.min(500, timeoutMs - (Date.now() - t0)));
      await Promise.race([closed, new Promise((r) => setTimeout(r, grace))]);
      server.forceShutdown();
      await closed;
      await opts.backend.stop();
      log.info({ drained: result === 'idle', cutCalls }, 'gRPC server stopped');
      return { drained: result === 'idle', cutCalls };
    })();
    return stopping;
  };

  return { port, address: `${host.includes(':') ? `[${host}]` : host}:${port}`, health, metrics, inflight, shutdown };
}
