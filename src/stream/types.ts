// Shapes shared by the streaming pipeline, the realtime head and the tests. The head only reads
// `events` (app, type, timestampMs); the rest is bookkeeping of the pipeline.

/** 1 = install, 2 = uninstall (the values of aetn.v1.AppEventType). */
export type EventType = 1 | 2;

export interface RecentEvent {
  /** Row of the app in the vocabulary (the tied app matrix). */
  app: number;
  type: EventType;
  timestampMs: number;
  /** Kept so that the same event delivered twice is applied once. */
  eventId: string;
}

/** One user's state: the most recent N events, oldest first. */
export interface RecentEvents {
  userId: string;
  events: RecentEvent[];
  /** Distinct events ever applied to this user (also those that fell out of the window). */
  applied: number;
  /** Wall-clock time of the last change. */
  updatedAtMs: number;
}

/**
 * The short-term model as the pipeline sees it: one call per batch of touched users, one vector
 * per state, all of the short-term feature's dimension. May be async (a worker pool, a GPU).
 */
export type HeadFn = (states: RecentEvents[], nowMs: number) => Float32Array[] | Promise<Float32Array[]>;

/** Why a message went to the dead-letter topic. */
export type DlqReason =
  | 'undecodable' // not a protobuf AppEvent
  | 'missing-field' // event id, user id, package name or timestamp absent
  | 'invalid-field' // present but unusable (too long, negative time)
  | 'unknown-type' // neither install nor uninstall
  | 'future-timestamp' // later than now + the allowed clock skew
  | 'key-mismatch' // Kafka key is not the user id (per-user order would break)
  | 'unknown-app' // package name not in the vocabulary
  | 'forgotten-user'; // the user was erased (aetn store forget / AdminService.ForgetUsers)

export const DLQ_REASONS: readonly DlqReason[] = [
  'undecodable',
  'missing-field',
  'invalid-field',
  'unknown-type',
  'future-timestamp',
  'key-mismatch',
  'unknown-app',
  'forgotten-user',
];

/** A decoded, validated event mapped through the vocabulary. */
export interface ValidEvent {
  eventId: string;
  userId: string;
  app: number;
  type: EventType;
  timestampMs: number;
}
