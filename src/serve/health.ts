// Standard gRPC health checking (grpc.health.v1: Check and Watch) with a status per service and
// for the whole server (""). Load balancers and `grpcurl ... grpc.health.v1.Health/Check` use it.
import type * as grpc from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { create, toBinary } from '@bufbuild/protobuf';
import { FieldDescriptorProto_Label, FieldDescriptorProto_Type, FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';

export class Health {
  private readonly impl: HealthImplementation;
  private readonly statuses = new Map<string, ServingStatus>();

  constructor(readonly services: readonly string[]) {
    this.impl = new HealthImplementation();
    this.setAll('NOT_SERVING');
  }

  addToServer(server: grpc.Server): void {
    this.impl.addToServer(server);
  }

  set(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    this.impl.setStatus(service, status);
  }

  /** Every service and the server as a whole (""). */
  setAll(status: ServingStatus): void {
    this.set('', status);
    for (const s of this.services) this.set(s, status);
  }

  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }
}

/**
 * The FileDescriptorProto of grpc/health/v1/health.proto (Check and Watch), for reflection. Built
 * here with protobuf-es: the one protobufjs derives from the library's .proto has a malformed map
 * entry (HealthListResponse.statuses) that Go clients such as grpcurl reject.
 */
export function healthFileDescriptors(): Buffer[] {
  const T = FieldDescriptorProto_Type;
  const fdp = create(FileDescriptorProtoSchema, {
    name: 'grpc/health/v1/health.proto',
    package: 'grpc.health.v1',
    syntax: 'proto3',
    messageType: [
      { name: 'HealthCheckRequest', field: [{ name: 'service', number: 1, label: FieldDescriptorProto_Label.OPTIONAL, type: T.STRING, jsonName: 'service' }] },
      {
        name: 'HealthCheckResponse',
        field: [{ name: 'status', number: 1, label: FieldDescriptorProto_Label.OPTIONAL, type: T.ENUM, typeName: '.grpc.health.v1.HealthCheckResponse.ServingStatus', jsonName: 'status' }],
        enumType: [
          {
            name: 'ServingStatus',
            value: [
              { name: 'UNKNOWN', number: 0 },
              { name: 'SERVING', number: 1 },
              { name: 'NOT_SERVING', number: 2 },
              { name: 'SERVICE_UNKNOWN', number: 3 },
            ],
          },
        ],
      },
    ],
    service: [
      {
        name: 'Health',
        method: [
          { name: 'Check', inputType: '.grpc.health.v1.HealthCheckRequest', outputType: '.grpc.health.v1.HealthCheckResponse' },
          { name: 'Watch', inputType: '.grpc.health.v1.HealthCheckRequest', outputType: '.grpc.health.v1.HealthCheckResponse', serverStreaming: true },
        ],
      },
    ],
  });
  return [Buffer.from(toBinary(FileDescriptorProtoSchema, fdp))];
}
