// Server reflection (grpc.reflection.v1 and v1alpha) so `grpcurl list/describe` work without
// .proto files. @grpc/reflection wants proto-loader package definitions; it only reads their
// serialized FileDescriptorProtos, so we hand it the descriptors embedded in the protobuf-es
// generated code (one source of truth: what we serve is what we describe).
import type * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { toBinary, type DescFile, type DescService } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { healthFileDescriptors } from './health.js';

function fileWithDeps(file: DescFile, out: Map<string, Buffer>): void {
  if (out.has(file.proto.name)) return;
  out.set(file.proto.name, Buffer.from(toBinary(FileDescriptorProtoSchema, file.proto)));
  for (const dep of file.dependencies) fileWithDeps(dep, out);
}

export function addReflection(server: grpc.Server, services: readonly DescService[]): void {
  const root: Record<string, { fileDescriptorProtos: Buffer[] }> = {};
  for (const s of services) {
    const files = new Map<string, Buffer>();
    fileWithDeps(s.file, files);
    root[s.typeName] = { fileDescriptorProtos: [...files.values()] };
  }
  root['grpc.health.v1.Health'] = { fileDescriptorProtos: healthFileDescriptors() };
  // The typings ask for a full proto-loader PackageDefinition; the implementation reads only this.
  new ReflectionService(root as never).addToServer(server as never);
}
