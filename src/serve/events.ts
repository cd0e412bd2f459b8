// EventService: ad systems and SDK collectors stream app events in; one reply acknowledges the
// whole call once the sink has made every accepted event durable. Bad events are refused one by
// one with a reason (the stream goes on); only auth failures, an oversized call or a sink failure
// fail the call — and then nothing of it is acknowledged, so the client retries (ids dedup).
import * as grpc from '@grpc/grpc-js';
import { create, toBinary } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { EventService, PublishEventsResponseSchema, type PublishEventsRequest } from '../gen/aetn/v1/event_service_pb.js';
import { AppEventSchema, type AppEvent } from '../gen/aetn/v1/events_pb.js';
import { decodeEvent, isRejection, DEFAULT_MAX_FUTURE_MS } from '../stream/codec.js';
import type { AcceptedEvent, EventSink } from '../stream/sinks.js';
import { serviceDefinition } from './adapter.js';
import { decodeRequest } from './rpc.js';
import type { ApiKeyAuth } from './auth.js';
import { RpcError, toStatus } from './errors.js';

export const DEFAULT_MAX_EVENTS_PER_CALL = 10_000;

export interface EventServiceOptions {
  auth: ApiKeyAuth;
  sink: EventSink;
  /** Package name -> app index: unknown packages are refused at the edge. */
  vocab: ReadonlyMap<string, number>;
  log: Logger;
  maxEventsPerCall?: number;
  maxFutureMs?: number;
  /** Erased users: their events are rejected with reason forgotten-user. */
  isForgotten?: (userId: string) => boolean;
}

/** Adds aetn.v1.EventService to `server` (before it starts). */
export function registerEventService(server: grpc.Server, opts: EventServiceOptions): void {
  server.addService(serviceDefinition(EventService), { publishEvents: publishEvents(opts) });
}

function publishEvents(opts: EventServiceOptions): grpc.handleClientStreamingCall<unknown, unknown> {
  const limit = opts.maxEventsPerCall ?? DEFAULT_MAX_EVENTS_PER_CALL;
  return (call, callback) => {
    let done = false;
    const fail = (err: unknown) => {
      if (done) return;
      done = true;
      const s = toStatus(err);
      if (s.internal) opts.log.error({ err }, 'PublishEvents failed');
      callback({ code: s.code, details: s.details });
    };
    try {
      opts.auth.check(call.metadata, 'events:write');
    } catch (err) {
      fail(err);
      return;
    }
    const accepted: AcceptedEvent[] = [];
    const rejected: { index: number; reason: string; detail: string }[] = [];
    let index = 0;
    call.on('data', (raw: unknown) => {
      if (done) return;
      let req: PublishEventsRequest;
      try {
        req = decodeRequest(raw, 'EventService/PublishEvents') as unknown as PublishEventsRequest;
      } catch (err) {
        fail(new RpcError((err as RpcError).code, `${(err as Error).message}; nothing of this call is acknowledged`));
        return;
      }
      for (const ev of req.events) {
        if (index >= limit) {
          fail(new RpcError(grpc.status.RESOURCE_EXHAUSTED, `more than ${limit} events in one call: split them over several calls`));
          return;
        }
        const r = validate(ev, opts);
        if (isRejection(r)) rejected.push({ index, reason: r.reason, detail: r.detail });
        else accepted.push({ event: r, packageName: ev.packageName });
        index++;
      }
    });
    call.on('error', (err) => fail(err));
    call.on('end', () => {
      if (done) return;
      opts.sink.write(accepted).then(
        (res) => {
          if (done) return;
          done = true;
          opts.log.debug({ accepted: res.accepted, duplicates: res.duplicates, rejected: rejected.length, sink: opts.sink.kind }, 'events acknowledged');
          callback(null, create(PublishEventsResponseSchema, { accepted: res.accepted, duplicates: res.duplicates, rejected }));
        },
        (err) => fail(err),
      );
    });
  };
}

/** The Kafka pipeline's own validation (decodeEvent), keyed by the event's user id. */
function validate(ev: AppEvent, opts: EventServiceOptions) {
  return decodeEvent(toBinary(AppEventSchema, ev), Buffer.from(ev.userId, 'utf8'), {
    vocab: opts.vocab,
    nowMs: Date.now(),
    maxFutureMs: opts.maxFutureMs ?? DEFAULT_MAX_FUTURE_MS,
    ...(opts.isForgotten ? { isForgotten: opts.isForgotten } : {}),
  });
}
