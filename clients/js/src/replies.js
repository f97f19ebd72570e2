// Which command an answer from the gateway belongs to. Answers come in the
// order of the commands (protocol section 3), but a `PUB` is answered only
// when refused (`ERR <code>`), so an `ERR` right after a `PUB` could be the
// `PUB`'s or the next command's. The client keeps that from ever being in
// doubt: before a command that is always answered (`HELLO`, `SUB`, `UNSUB`,
// `PING`) follows a `PUB` still unanswered, it sends a `PING` as a barrier;
// then an `ERR` before the barrier's `PONG` is a `PUB`'s, and one after it
// is the next command's. A run of `PUB`s is closed by a barrier every
// `MAX_PUB_RUN` too, so the list stays bounded however much is published.
// Pure: no socket.

/** The most `PUB`s in a row before a barrier `PING`. */
export const MAX_PUB_RUN = 64;

/** The commands sent on one connection and not yet answered. */
export class Pending {
  constructor() {
    this.items = [];
    this.pubRun = 0;
  }

  /** How many commands wait for an answer (PUBs included). */
  get length() {
    return this.items.length;
  }

  /**
   * Whether a barrier `PING` must be sent before a command with `verb`:
   * before a `HELLO`, `SUB` or `UNSUB` that would follow an unanswered
   * `PUB`, or before the `PUB` that would pass `MAX_PUB_RUN`. A `PING` is
   * a barrier itself: it is never refused.
   */
  needsBarrier(verb) {
    if (verb === "PING") return false;
    return verb === "PUB" ? this.pubRun >= MAX_PUB_RUN : this.pubRun > 0;
  }

  /**
   * Records a command sent: `{ verb: "HELLO" | "SUB" | "UNSUB" | "PING" |
   * "PUB", ... }`.
   */
  push(entry) {
    this.items.push(entry);
    this.pubRun = entry.verb === "PUB" ? this.pubRun + 1 : 0;
  }

  /**
   * Matches an answer: `{ type: "ok" | "pong" | "err", ... }` as
   * `parseFrame` reads it. Returns `{ entry }`: the command answered, with
   * for an `ERR` of a `PUB` run `{ verb: "PUB", topic }` (`topic` undefined
   * when the run held several topics); `{ entry: undefined }` for an `ERR`
   * with no command waiting (a refused connection's only frame); or
   * `{ mismatch: true }` for an answer no command asked for.
   */
  answer(frame) {
    if (frame.type === "err") {
      const first = this.items[0];
      if (!first) return { entry: undefined };
      if (first.verb !== "PUB") {
        this.items.shift();
        this.pubRun = Math.min(this.pubRun, this.items.length);
        return { entry: first };
      }
      let end = 0;
      while (end < this.items.length && this.items[end].verb === "PUB") end++;
      const run = this.items.slice(0, end);
      const topic = run.every((p) => p.topic === first.topic) ? first.topic : undefined;
      this.items.shift();
      this.pubRun = Math.min(this.pubRun, this.items.length);
      return { entry: { verb: "PUB", topic } };
    }
    // An answer to an always-answered command: every PUB before it passed.
    while (this.items.length > 0 && this.items[0].verb === "PUB") this.items.shift();
    const first = this.items.shift();
    this.pubRun = Math.min(this.pubRun, this.items.length);
    if (!first || !answers(frame, first)) return { mismatch: true };
    return { entry: first };
  }

  /** Removes and returns every command still waiting. */
  clear() {
    const items = this.items;
    this.items = [];
    this.pubRun = 0;
    return items;
  }
}

function answers(frame, entry) {
  if (frame.type === "pong") return entry.verb === "PING";
  if (frame.type !== "ok" || frame.verb !== entry.verb) return false;
  return entry.verb === "HELLO" || frame.topic === entry.topic;
}
