// A typed grpc-js client over the same protobuf-es descriptors as the server (tests, benchmarks,
// and any TypeScript caller). Unary methods return promises; server-streaming methods return async
// iterables. Failures reject with grpc-js ServiceError (`code`, `details`, `metadata`).
import * as grpc from '@grpc/grpc-js';
import type { DescMessage, DescService, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import { serviceDefinition, toMessage } from './adapter.js';

export interface CallOptions {
  /** Extra metadata, e.g. { 'x-request-id': 'abc' }. */
  metadata?: Record<string, string>;
  /** Relative deadline in ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

type ClientMethod<M> = M extends { methodKind: 'unary'; input: infer I extends DescMessage; output: infer O extends DescMessage }
  ? (req: MessageInitShape<I>, opts?: CallOptions) => Promise<MessageShape<O>>
  : M extends { methodKind: 'server_streaming'; input: infer I extends DescMessage; output: infer O extends DescMessage }
    ? (req: MessageInitShape<I>, opts?: CallOptions) => AsyncIterable<MessageShape<O>>
    : never;

export type TypedClient<S extends DescService> = (S extends { method: infer Ms } ? { [K in keyof Ms]: ClientMethod<Ms[K]> } : never) & {
  close(): void;
  readonly raw: grpc.Client;
};

export interface ClientOptions {
  apiKey?: string;
  credentials?: grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
}

export function createClient<S extends DescService>(service: S, address: string, opts: ClientOptions = {}): TypedClient<S> {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(service), service.name);
  const raw = new Ctor(address, opts.credentials ?? grpc.credentials.createInsecure(), opts.channelOptions) as unknown as grpc.Client &
    Record<string, (...args: unknown[]) => unknown>;
  const out: Record<string, unknown> = { raw, close: () => raw.close() };
  const metaFor = (o?: CallOptions): grpc.Metadata => {
    const md = new grpc.Metadata();
    if (opts.apiKey) md.set('x-api-key', opts.apiKey);
    for (const [k, v] of Object.entries(o?.metadata ?? {})) md.set(k, v);
    return md;
  };
  const callOpts = (o?: CallOptions): grpc.CallOptions => (o?.timeoutMs !== undefined ? { deadline: Date.now() + o.timeoutMs } : {});
  for (const m of service.methods) {
    const fn = raw[m.localName]!.bind(raw);
    if (m.methodKind === 'unary') {
      out[m.localName] = (req: MessageInitShape<DescMessage>, o?: CallOptions) =>
        new Promise((resolve, reject) => {
          const call = fn(toMessage(m.input, req), metaFor(o), callOpts(o), (err: grpc.ServiceError | null, res: unknown) =>
            err ? reject(err) : resolve(res),
          ) as grpc.ClientUnaryCall;
          o?.signal?.addEventListener('abort', () => call.cancel(), { once: true });
        });
    } else if (m.methodKind === 'server_streaming') {
      out[m.localName] = (req: MessageInitShape<DescMessage>, o?: CallOptions) => {
        const call = fn(toMessage(m.input, req), metaFor(o), callOpts(o)) as grpc.ClientReadableStream<unknown>;
        o?.signal?.addEventListener('abort', () => call.cancel(), { once: true });
        return call;
      };
    }
  }
  return out as TypedClient<S>;
}
