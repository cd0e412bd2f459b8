// A client of interchangeable serving replicas, as the cluster mode documents it
// (docs/parts/scale-out.md): calls go round robin over the replicas' addresses, and a call that
// fails with UNAVAILABLE (the replica is gone or cannot reach its data) is retried once on another
// replica. Anything else, or a second failure, is a failed call. It counts both. As gRPC's own
// round_robin policy does with a subchannel in failure, a replica that answered UNAVAILABLE is
// left out of the rotation for a while (DOWN_MS) and then tried again.
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { createClient, type TypedClient } from '../../src/serve/client.js';
import { serviceDefinition } from '../../src/serve/adapter.js';
import { AudienceService, type SearchNeighborsResponse } from '../../src/gen/aetn/v1/audience_pb.js';
import { UserVectorService, VectorView } from '../../src/gen/aetn/v1/user_vector_pb.js';
import { EventService, PublishEventsRequestSchema, type PublishEventsResponse } from '../../src/gen/aetn/v1/event_service_pb.js';
import type { AppEventType } from '../../src/gen/aetn/v1/events_pb.js';

export interface PlainAppEvent {
  eventId: string;
  userId: string;
  packageName: string;
  type: 1 | 2;
  timestampMs: number;
}

interface Replica {
  address: string;
  audience: TypedClient<typeof AudienceService>;
  vectors: TypedClient<typeof UserVectorService>;
  events: grpc.Client;
}

export interface CallCounts {
  calls: number;
  /** First attempts that failed with UNAVAILABLE and were retried on another replica. */
  retried: number;
  /** Calls that failed for good (after the one retry, or with another error). */
  failed: number;
  errors: string[];
}

const DOWN_MS = 5_000;

export class ReplicaClient {
  private readonly replicas: Replica[];
  private next = 0;
  private readonly downUntil = new Map<Replica, number>();
  readonly counts: CallCounts = { calls: 0, retried: 0, failed: 0, errors: [] };

  constructor(addresses: string[], private readonly apiKey: string, private readonly timeoutMs = 20_000) {
    if (addresses.length < 2) throw new Error('a retry on another replica needs at least two replicas');
    this.replicas = addresses.map((address) => {
      const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(EventService), 'EventService');
      return {
        address,
        audience: createClient(AudienceService, address, { apiKey }),
        vectors: createClient(UserVectorService, address, { apiKey }),
        events: new Ctor(address, grpc.credentials.createInsecure()) as grpc.Client,
      };
    });
  }

  /** The next replica in the rotation that is not marked down (any, when all are). */
  private pick(except?: Replica): Replica {
    const now = Date.now();
    for (let i = 0; i < this.replicas.length; i++) {
      const r = this.replicas[this.next++ % this.replicas.length]!;
      if (r !== except && (this.downUntil.get(r) ?? 0) <= now) return r;
    }
    return this.replicas.find((r) => r !== except) ?? this.replicas[0]!;
  }

  private async call<T>(fn: (r: Replica) => Promise<T>): Promise<T> {
    this.counts.calls++;
    const first = this.pick();
    try {
      return await fn(first);
    } catch (err) {
      const code = (err as grpc.ServiceError).code;
      if (code !== grpc.status.UNAVAILABLE) {
        this.counts.failed++;
        this.counts.errors.push(`${first.address}: ${(err as Error).message}`);
        throw err;
      }
      this.counts.retried++;
      this.downUntil.set(first, Date.now() + DOWN_MS);
      try {
        return await fn(this.pick(first));
      } catch (err2) {
        this.counts.failed++;
        this.counts.errors.push(`retry: ${(err2 as Error).message}`);
        throw err2;
      }
    }
  }

  neighbors(userId: string, k: number, ef = 0): Promise<SearchNeighborsResponse> {
    return this.call((r) => r.audience.searchNeighbors({ query: { case: 'userId', value: userId }, k, ef }, { timeoutMs: this.timeoutMs }));
  }

  /**
   * The whole look-alike answer: user ids in order. The request id salts the server's population
   * sample, so the same id gives the same answer on any replica (and in the embedded mode).
   */
  lookalike(seeds: string[], audienceSize: number, requestId: string): Promise<string[]> {
    return this.call(async (r) => {
      const out: string[] = [];
      for await (const m of r.audience.extendLookalike({ seeds: { case: 'seedUsers', value: { userIds: seeds } }, audienceSize }, { timeoutMs: this.timeoutMs * 3, metadata: { 'x-request-id': requestId } })) {
        if (m.message.case === 'chunk') for (const u of m.message.value.users) out.push(u.userId);
      }
      return out;
    });
  }

  /** The user's short-term vector part as a replica serves it. */
  shortVector(userId: string) {
    return this.call(async (r) => (await r.vectors.getUserVector({ userId, view: VectorView.SHORT_TERM }, { timeoutMs: this.timeoutMs })).user?.shortTerm);
  }

  publish(events: PlainAppEvent[]): Promise<PublishEventsResponse> {
    return this.call(
      (r) =>
        new Promise<PublishEventsResponse>((resolve, reject) => {
          const md = new grpc.Metadata();
          md.set('x-api-key', this.apiKey);
          const call = (r.events as unknown as Record<string, (md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, res: PublishEventsResponse) => void) => grpc.ClientWritableStream<unknown>>)
            .publishEvents!.call(r.events, md, { deadline: Date.now() + this.timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
          call.write(create(PublishEventsRequestSchema, { events: events.map((e) => ({ ...e, type: e.type as AppEventType, timestampMs: BigInt(e.timestampMs) })) }));
          call.end();
        }),
    );
  }

  close(): void {
    for (const r of this.replicas) {
      r.audience.close();
      r.vectors.close();
      r.events.close();
    }
  }
}
