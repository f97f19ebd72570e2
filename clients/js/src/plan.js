// One subscription's recovery state, and the plan for (re)subscribing it on
// each new connection. Pure: it says which `SUB` to send and what an answer
// means, and the client does the sending and the telling.
//
// A subscription made with `recover: true` asks for positions (contract
// section 13): `SUB <topic> LATEST` the first time, `SUB <topic>
// <epoch>:<offset>` once it has a position. A gateway without history
// answers `ERR bad-topic` (history off) or `ERR no-history` (the topic has
// none): the subscription then falls back to a plain `SUB <topic>`, says so
// once, and, since nothing can be recovered, reports each later resubscribe
// as `lost`. A subscription without `recover` always subscribes plainly.

/** The `ERR` codes that mean "no history here": fall back to a plain SUB. */
const NO_HISTORY = new Set(["bad-topic", "no-history", "history-unavailable", "bad-position"]);

/** A fresh recovery state for one subscription. */
export function newTrack(recover) {
  return {
    recover: Boolean(recover),
    // The last position delivered ({ epoch, offset }), once known.
    position: undefined,
    // Whether a SUB was acknowledged on some connection already.
    subscribedBefore: false,
    // Whether the fallback to a plain SUB was reported.
    toldNoHistory: false,
    // Replayed messages still to come after `OK SUB ... RECOVERED <n>`.
    replaying: 0,
  };
}

/**
 * The first `SUB` to send for this subscription on a new connection:
 * `{ mode, position? }` with `mode` `plain`, `latest` or `position`.
 */
export function planSubscribe(track) {
  if (!track.recover) return { mode: "plain" };
  if (track.position) return { mode: "position", position: track.position };
  return { mode: "latest" };
}

/**
 * What an `OK SUB` answering a SUB sent in `mode` means. Updates `track`
 * and returns `{ lost?: { reason, position? }, recovered?: n }`:
 * - `lost` with reason `lost`: the gateway could not recover from the
 *   position (`OK SUB ... LOST`, or a new epoch);
 * - `lost` with reason `no-history`: a plain resubscribe of a recovering
 *   subscription, or `LATEST` after having been subscribed before, so what
 *   was published meanwhile is gone;
 * - `recovered`: the number of messages replayed next.
 */
export function onSubscribed(track, mode, answer) {
  const first = !track.subscribedBefore;
  track.subscribedBefore = true;
  track.replaying = 0;
  if (mode === "plain") {
    return track.recover && !first ? { lost: { reason: "no-history" } } : {};
  }
  const position = answer.position;
  if (!position) {
    // A positioned SUB answered without a position: treat as no history.
    return first ? {} : { lost: { reason: "no-history" } };
  }
  if (answer.lost) {
    track.position = { ...position };
    return { lost: { reason: "lost", position: { ...position } } };
  }
  if (answer.recovered !== undefined && track.position && track.position.epoch === position.epoch) {
    // The replayed messages move the offset on, one by one.
    track.replaying = answer.recovered;
    return { recovered: answer.recovered };
  }
  track.position = { ...position };
  return first || mode === "position" ? {} : { lost: { reason: "no-history", position: { ...position } } };
}

/**
 * What an `ERR <code>` answering a SUB sent in `mode` means: `{ retry:
 * "plain", noHistory }` to send a plain `SUB` now (with `noHistory` true
 * the first time, to say so once), `{ resubscribe: true }` to send `UNSUB`
 * and then the planned `SUB` again, or `{ failed: true }`: the
 * subscription is refused on this connection (`forbidden`,
 * `too-many-subscriptions`).
 *
 * `ERR already-subscribed` (section 13: the connection holds the topic,
 * plainly or positioned) means the gateway's view and the client's differ;
 * the client's wins: `UNSUB`, then the SUB it planned, from its position,
 * so nothing is missed in between. Once per connection and subscription
 * (`again`: this SUB was that second try): a second refusal is a failure.
 */
export function onSubscribeRefused(track, mode, code, again = false) {
  if (code === "already-subscribed") return again ? { failed: true } : { resubscribe: true };
  if (mode !== "plain" && NO_HISTORY.has(code)) {
    const noHistory = !track.toldNoHistory;
    track.toldNoHistory = true;
    return { retry: "plain", noHistory };
  }
  return { failed: true };
}

/**
 * Whether a `MSG` with `offset` (undefined for a plain one) is delivered:
 * a positioned message at or before the last offset delivered is a
 * duplicate and is not. Moves the position on.
 */
export function acceptMessage(track, offset) {
  if (offset === undefined || !track.position) return true;
  if (offset <= track.position.offset) return false;
  track.position.offset = offset;
  return true;
}

/**
 * Counts a positioned message delivered: true when it was the last of a
 * replay (`OK SUB ... RECOVERED <n>`), so the recovery is complete.
 */
export function countReplayed(track) {
  if (track.replaying <= 0) return false;
  track.replaying--;
  return track.replaying === 0;
}

/** A `LOST <topic> <position>` frame: continuity broke; go on from there. */
export function onLostFrame(track, position) {
  track.position = { ...position };
  track.replaying = 0;
  return { lost: { reason: "gap", position: { ...position } } };
}
