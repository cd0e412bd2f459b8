// The realtime head's input timeline, built by the same rules as its training data. Training
// timelines come from prepared data (src/data/prepare.ts): at most `weeklyCap` operations per user
// per week (the most recent ones; weeks counted back from the dataset's reference end), then the
// last `seqLen` installs and the last `seqLen` uninstalls, merged by time (train-head.ts
// timelineOf). Serving applies the same caps to a user's recent-events window before the head
// reads it, with weeks counted back from the serving time, so the head sees the kind of timeline
// it was trained on; the head then keeps the newest N of it, in both paths.
//
// What cannot match: prepare counts events of apps outside the vocabulary against the weekly cap,
// while the stream refuses those events at the edge (DLQ `unknown-app`); and the stored window
// keeps only the newest `realtime.maxEvents` raw events, so a burst larger than that pushes older
// weeks out before the cap would have thinned the burst (raise realtime.maxEvents, up to 255, to
// keep more history).
import type { RecentEvent, RecentEvents } from './types.js';

export const WEEK_MS = 7 * 86_400_000;

export interface TimelineCaps {
  /** Operations kept per week, the most recent (prepare's --weekly-cap, default 10). */
  weeklyCap: number;
  /** Installs kept, and uninstalls kept, the most recent (prepare's --seq-len, default 25). */
  seqLen: number;
}

export const DEFAULT_CAPS: TimelineCaps = { weeklyCap: 10, seqLen: 25 };

/** Weeks between `t` and `refEndMs` (0 = the last week before it), as prepare's weeksBefore. */
function weekOf(t: number, refEndMs: number): number {
  return Math.floor((refEndMs - 1 - t) / WEEK_MS);
}

/**
 * `events` (oldest first, as in RecentEvents) capped as training data is: per week at most
 * `weeklyCap`, then the last `seqLen` installs and last `seqLen` uninstalls; oldest first, an
 * install before an uninstall at the same millisecond (as timelineOf orders them).
 */
export function headTimeline(events: readonly RecentEvent[], nowMs: number, caps: TimelineCaps = DEFAULT_CAPS): RecentEvent[] {
  const kept: RecentEvent[] = [];
  let week = Number.NaN;
  let inWeek = 0;
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i]!;
    const w = weekOf(e.timestampMs, nowMs);
    if (w !== week) {
      week = w;
      inWeek = 0;
    }
    if (inWeek < caps.weeklyCap) {
      kept.push(e);
      inWeek++;
    }
  }
  kept.reverse();
  const ins = kept.filter((e) => e.type === 1);
  const uns = kept.filter((e) => e.type === 2);
  const out = [...ins.slice(-caps.seqLen), ...uns.slice(-caps.seqLen)];
  // Stable: installs (pushed first) stay before uninstalls at the same millisecond.
  return out.sort((a, b) => a.timestampMs - b.timestampMs);
}

/** A state with its events replaced by the head's timeline (the stored state is left as it is). */
export function headState(s: RecentEvents, nowMs: number, caps: TimelineCaps = DEFAULT_CAPS): RecentEvents {
  const events = headTimeline(s.events, nowMs, caps);
  return events.length === s.events.length ? s : { ...s, events };
}
