// Dead-letter records: the original bytes survive (base64 in a JSON envelope) together with where
// they came from and why they were refused, so a fixed consumer or a person can replay them.
import type { Message } from 'kafkajs';
import type { DlqReason } from './types.js';

export interface DlqEnvelope {
  reason: DlqReason;
  detail: string;
  source: { topic: string; partition: number; offset: string; timestampMs: number };
  key: string | null;
  /** The original message value, base64 (empty string when it had none). */
  valueBase64: string;
  failedAtMs: number;
  consumerGroup: string;
}

export const DLQ_HEADER_REASON = 'aetn-dlq-reason';

export function dlqMessage(env: DlqEnvelope, originalKey: Buffer | null): Message {
  return {
    // Same key as the original: a replay from the DLQ lands on the user's partition again.
    key: originalKey,
    value: JSON.stringify(env),
    headers: {
      [DLQ_HEADER_REASON]: env.reason,
      'aetn-dlq-detail': env.detail.slice(0, 500),
      'aetn-source-topic': env.source.topic,
      'aetn-source-partition': String(env.source.partition),
      'aetn-source-offset': env.source.offset,
    },
  };
}

export function parseDlqEnvelope(value: Buffer | null): DlqEnvelope {
  if (!value) throw new Error('DLQ message without value');
  return JSON.parse(value.toString('utf8')) as DlqEnvelope;
}
