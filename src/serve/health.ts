// Standard gRPC health checking (grpc.health.v1: Check and Watch) with a status per service and
// for the whole server (""). Load balancers and `grpcurl ... grpc.health.v1.Health/Check` use it.
import type * as grpc from '@grpc/grpc-js';
import { HealthImplementation, service as healthService, type ServingStatus } from 'grpc-health-check';

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

/** Serialized FileDescriptorProtos of health.proto, for reflection. */
export function healthFileDescriptors(): Buffer[] {
  const check = (healthService as unknown as Record<string, { requestType: { fileDescriptorProtos: Buffer[] } }>).Check;
  return check?.requestType.fileDescriptorProtos ?? [];
}
