// Binds small typed handlers to a grpc-js server: authentication, request ids, cancellation,
// status mapping, metrics and logs happen here once, so handlers only validate and do the work.
import * as grpc from '@grpc/grpc-js';
import { once } from 'node:events';
import type { DescMessage, DescService, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { MalformedRequest, RawRequest, serviceDefinition, toMessage } from './adapter.js';
import type { ApiKeyAuth, Principal, Scope } from './auth.js';
import { CancelledError, invalid, RpcError, toStatus } from './errors.js';
import { requestCap } from './validate.js';
import type { RpcMetrics } from './metrics.js';

export interface CallContext {
  readonly requestId: string;
  /** `Service/Method`, for logs and metrics. */
  readonly method: string;
  readonly metadata: grpc.Metadata;
  readonly principal: Principal;
  /** Absolute deadline in epoch ms (Infinity when the client set none). */
  readonly deadlineMs: number;
  /** Aborted when the client cancels or the deadline passes. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Throws CancelledError once the call is cancelled or past its deadline: call between phases. */
  throwIfCancelled(): void;
}

/**
 * A response already encoded as the output message's protobuf bytes (for hot paths that encode
 * by hand, see src/serve/encode.ts). The brand only documents intent; any bytes pass.
 */
export type Encoded<O extends DescMessage> = Uint8Array & { readonly __encodes?: O };

export type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  req: MessageShape<I>,
  ctx: CallContext,
) => MessageInitShape<O> | Encoded<O> | Promise<MessageInitShape<O> | Encoded<O>>;

export type ServerStreamHandler<I extends DescMessage, O extends DescMessage> = (
  req: MessageShape<I>,
  ctx: CallContext,
  send: (msg: MessageInitShape<O> | Encoded<O>) => Promise<void>,
) => Promise<void>;

type MethodImpl<M> = M extends { methodKind: 'unary'; input: infer I extends DescMessage; output: infer O extends DescMessage }
  ? UnaryHandler<I, O>
  : M extends { methodKind: 'server_streaming'; input: infer I extends DescMessage; output: infer O extends DescMessage }
    ? ServerStreamHandler<I, O>
    : never;

export type ServiceImpl<S extends DescService> = S extends { method: infer Ms }
  ? { [K in keyof Ms]: MethodImpl<Ms[K]> }
  : never;

export interface BindOptions {
  auth: ApiKeyAuth;
  /** The scope every method of the service requires. */
  scope: Scope;
  log: Logger;
  metrics?: RpcMetrics;
  inflight?: InflightCounter;
}

/** Counts calls in progress so shutdown can report what it drains. */
export class InflightCounter {
  count = 0;
  private waiters: (() => void)[] = [];
  enter(): void {
    this.count++;
  }
  leave(): void {
    this.count--;
    if (this.count === 0) for (const w of this.waiters.splice(0)) w();
  }
  idle(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }
}

let seq = 0;
const idPrefix = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

/** The caller's x-request-id when it sent a usable one, else undefined. */
function givenRequestId(md: grpc.Metadata): string | undefined {
  const given = md.get('x-request-id')[0];
  if (typeof given === 'string' && given.length > 0 && given.length <= 64 && /^[\w.:-]+$/.test(given)) return given;
  return undefined;
}

function requestIdOf(md: grpc.Metadata): string {
  return givenRequestId(md) ?? `${idPrefix}-${(++seq).toString(36)}`;
}

type AnyCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;

class Ctx implements CallContext {
  private ac: AbortController | undefined;
  readonly deadlineMs: number;
  principal!: Principal;
  private logger: Logger | undefined;

  constructor(
    private readonly call: AnyCall,
    readonly requestId: string,
    readonly method: string,
    private readonly baseLog: Logger,
  ) {
    const d = call.getDeadline();
    this.deadlineMs = d instanceof Date ? d.getTime() : d;
  }

  /** grpc-js sets `cancelled` on the call (client cancel or deadline) before emitting 'cancelled'. */
  get cancelled(): boolean {
    return this.call.cancelled;
  }

  private reason(): CancelledError {
    return new CancelledError(Date.now() >= this.deadlineMs ? 'deadline' : 'cancelled');
  }

  // The listener is attached only when a handler asks for the signal: most calls are short
  // unary ones that never do, and one listener per call showed up in the rankers' profile.
  get signal(): AbortSignal {
    if (!this.ac) {
      const ac = new AbortController();
      this.ac = ac;
      if (this.cancelled) ac.abort(this.reason());
      else this.call.once('cancelled', () => ac.abort(this.reason()));
    }
    return this.ac.signal;
  }

  get metadata(): grpc.Metadata {
    return this.call.metadata;
  }

  get log(): Logger {
    this.logger ??= this.baseLog.child({ requestId: this.requestId, method: this.method });
    return this.logger;
  }

  throwIfCancelled(): void {
    if (Date.now() >= this.deadlineMs) throw new CancelledError('deadline');
    if (this.cancelled) throw new CancelledError('cancelled');
  }
}

/**
 * The request of an authenticated call, decoded now: over the method's size cap is
 * RESOURCE_EXHAUSTED, bytes that are not the method's message are INVALID_ARGUMENT.
 */
export function decodeRequest(req: unknown, method: string): MessageShape<DescMessage> {
  let msg = req;
  if (req instanceof RawRequest) {
    const cap = requestCap(method);
    if (req.size > cap) {
      throw new RpcError(grpc.status.RESOURCE_EXHAUSTED, `the request is ${req.size} bytes; ${method} accepts at most ${cap} bytes`);
    }
    msg = req.decode();
  }
  if (msg instanceof MalformedRequest) throw invalid(msg.message);
  return msg as MessageShape<DescMessage>;
}

/** Adds `service` to `server` with the given handlers. */
export function bindService<S extends DescService>(server: grpc.Server, service: S, impl: ServiceImpl<S>, opts: BindOptions): void {
  const def = serviceDefinition(service);
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const m of service.methods) {
    const fn = (impl as Record<string, unknown>)[m.localName];
    if (typeof fn !== 'function') throw new Error(`no handler for ${service.typeName}.${m.name}`);
    const name = `${service.name}/${m.name}`;
    if (m.methodKind === 'unary') {
      handlers[m.localName] = unary(name, m.output, fn as UnaryHandler<DescMessage, DescMessage>, opts);
    } else if (m.methodKind === 'server_streaming') {
      handlers[m.localName] = serverStream(name, m.output, fn as ServerStreamHandler<DescMessage, DescMessage>, opts);
    } else {
      throw new Error(`${service.typeName}.${m.name}: ${m.methodKind} methods are not supported`);
    }
  }
  server.addService(def, handlers);
}

function finish(opts: BindOptions, ctx: Ctx, start: number, err: unknown): { code: grpc.status; details: string } {
  let code: grpc.status = grpc.status.OK;
  let details = '';
  if (err !== undefined) {
    const s = ctx.cancelled && !(err instanceof CancelledError) ? toStatus(new CancelledError(Date.now() >= ctx.deadlineMs ? 'deadline' : 'cancelled')) : toStatus(err);
    code = s.code;
    details = s.details;
    if (s.internal) ctx.log.error({ err }, 'handler failed');
  }
  const secs = (performance.now() - start) / 1000;
  const codeName = grpc.status[code] ?? String(code);
  opts.metrics?.observe(ctx.method, codeName, secs);
  if (code !== grpc.status.OK && code !== grpc.status.INTERNAL) ctx.log.debug({ code: codeName, ms: secs * 1000, details }, 'call refused');
  else if (opts.log.isLevelEnabled('debug')) ctx.log.debug({ code: codeName, ms: secs * 1000, keyId: ctx.principal?.keyId }, 'call done');
  opts.inflight?.leave();
  return { code, details };
}

function trailerFor(requestId: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-request-id', requestId);
  return md;
}

function unary(name: string, output: DescMessage, fn: UnaryHandler<DescMessage, DescMessage>, opts: BindOptions): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const start = performance.now();
    opts.inflight?.enter();
    const given = givenRequestId(call.metadata);
    const ctx = new Ctx(call, given ?? `${idPrefix}-${(++seq).toString(36)}`, name, opts.log);
    const ok = (v: MessageInitShape<DescMessage> | Uint8Array) => {
      finish(opts, ctx, start, undefined);
      // A successful unary call carries the request id back only when the caller chose it: the
      // extra trailer cost ~20% of a bare call's CPU on the rankers' path, and a generated id of
      // a call that succeeded matches no log line at the default level. Errors always carry it.
      callback(null, v instanceof Uint8Array ? v : toMessage(output, v), given !== undefined ? trailerFor(ctx.requestId) : undefined);
    };
    const fail = (err: unknown) => {
      const s = finish(opts, ctx, start, err);
      callback({ code: s.code, details: s.details, metadata: trailerFor(ctx.requestId) });
    };
    try {
      ctx.principal = opts.auth.check(call.metadata, opts.scope);
      const out = fn(decodeRequest(call.request, name), ctx);
      if (out instanceof Promise) out.then(ok, fail);
      else ok(out);
    } catch (err) {
      fail(err);
    }
  };
}

function serverStream(name: string, output: DescMessage, fn: ServerStreamHandler<DescMessage, DescMessage>, opts: BindOptions): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    const start = performance.now();
    opts.inflight?.enter();
    const ctx = new Ctx(call, requestIdOf(call.metadata), name, opts.log);
    const send = async (msg: MessageInitShape<DescMessage> | Uint8Array): Promise<void> => {
      ctx.throwIfCancelled();
      if (!call.write(msg instanceof Uint8Array ? msg : toMessage(output, msg))) {
        // Backpressure: wait for the client to read, unless it goes away meanwhile.
        await Promise.race([once(call, 'drain'), once(ctx.signal, 'abort')]);
        ctx.throwIfCancelled();
      }
    };
    const run = async () => {
      ctx.principal = opts.auth.check(call.metadata, opts.scope);
      await fn(decodeRequest(call.request, name), ctx, send);
    };
    run().then(
      () => {
        finish(opts, ctx, start, undefined);
        call.end(trailerFor(ctx.requestId));
      },
      (err) => {
        const s = finish(opts, ctx, start, err);
        if (!ctx.cancelled) call.emit('error', { code: s.code, details: s.details, metadata: trailerFor(ctx.requestId) });
      },
    );
  };
}
