// Turns protobuf-es (v2) service descriptors into grpc-js service definitions, so the generated
// code in src/gen is the only protobuf runtime on the serving path (as connect-es does): grpc-js
// moves bytes, protobuf-es encodes them.
import * as grpc from '@grpc/grpc-js';
import { fromBinary, toBinary, create, type DescMessage, type DescMethod, type DescService, type MessageShape, type MessageInitShape } from '@bufbuild/protobuf';

export function methodPath(service: DescService, method: DescMethod): string {
  return `/${service.typeName}/${method.name}`;
}

function serializer(desc: DescMessage): (msg: unknown) => Buffer {
  return (msg) => {
    // Hot-path handlers hand in their own encoding of the message (src/serve/encode.ts).
    if (msg instanceof Uint8Array) return Buffer.isBuffer(msg) ? msg : Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
    const bytes = toBinary(desc, msg as MessageShape<DescMessage>);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer(desc: DescMessage): (buf: Buffer) => unknown {
  return (buf) => fromBinary(desc, buf);
}

/**
 * A request that did not decode. grpc-js answers a throwing request deserializer with INTERNAL
 * ("Error deserializing request"), before any handler, metric or log line sees the call; so the
 * server-side deserializer returns this instead, and the binding layer (rpc.ts, events.ts) answers
 * INVALID_ARGUMENT through the normal path (counted and logged like every refused call).
 */
export class MalformedRequest {
  constructor(
    readonly typeName: string,
    readonly reason: string,
  ) {}
  get message(): string {
    return `the request is not a valid ${this.typeName} message (${this.reason.slice(0, 200)})`;
  }
}

/**
 * A request as received, not decoded yet: the binding layer checks the API key and the method's
 * size cap first, so a keyless or oversized call never pays for decoding (decoding a 58 MB
 * look-alike request cost far more memory than its bytes).
 */
export class RawRequest {
  constructor(
    readonly desc: DescMessage,
    readonly bytes: Buffer,
  ) {}
  get size(): number {
    return this.bytes.length;
  }
  decode(): unknown {
    try {
      return fromBinary(this.desc, this.bytes);
    } catch (err) {
      return new MalformedRequest(this.desc.typeName, (err as Error).message);
    }
  }
}

function lenientDeserializer(desc: DescMessage): (buf: Buffer) => unknown {
  return (buf) => new RawRequest(desc, buf);
}

/** A grpc-js ServiceDefinition keyed by the method's local (lowerCamel) name. */
export function serviceDefinition(service: DescService): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    def[m.localName] = {
      path: methodPath(service, m),
      originalName: m.name,
      requestStream: m.methodKind === 'client_streaming' || m.methodKind === 'bidi_streaming',
      responseStream: m.methodKind === 'server_streaming' || m.methodKind === 'bidi_streaming',
      requestSerialize: serializer(m.input),
      // Only servers decode requests: malformed ones become MalformedRequest (see above).
      requestDeserialize: lenientDeserializer(m.input),
      responseSerialize: serializer(m.output),
      responseDeserialize: deserializer(m.output),
    };
  }
  return def as grpc.ServiceDefinition;
}

/** Message init shapes are accepted where a full message is expected; fill the defaults in. */
export function toMessage<D extends DescMessage>(desc: D, init: MessageInitShape<D> | MessageShape<D>): MessageShape<D> {
  return (init as { $typeName?: string }).$typeName === desc.typeName ? (init as MessageShape<D>) : create(desc, init as MessageInitShape<D>);
}
