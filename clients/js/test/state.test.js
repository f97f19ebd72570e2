// The pure parts of the reconnect loop: backoff, the decision after a
// close, the resubscribe plan, answers matched to commands, the bounded
// publish queue.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffCeiling, backoffDelay } from "../src/backoff.js";
import { afterClose } from "../src/policy.js";
import { acceptMessage, countReplayed, newTrack, onLostFrame, onSubscribeRefused, onSubscribed, planSubscribe } from "../src/plan.js";
import { MAX_PUB_RUN, Pending } from "../src/replies.js";
import { BoundedQueue } from "../src/queue.js";

test("backoff: the ceiling doubles from min and stops at max", () => {
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 100].map((n) => backoffCeiling(n, 500, 20000)),
    [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000],
  );
  assert.equal(backoffCeiling(0), 500, "default min");
  assert.equal(backoffCeiling(1000), 20000, "default max");
});

test("backoff: every delay lies within [min, max], jitter over the whole range", () => {
  for (let attempt = 0; attempt < 12; attempt++) {
    assert.equal(backoffDelay(attempt, 500, 20000, () => 0), 500);
    assert.equal(backoffDelay(attempt, 500, 20000, () => 1), Math.min(20000, 500 + backoffCeiling(attempt)));
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(attempt, 500, 20000);
      assert.ok(d >= 500 && d <= 20000, `attempt ${attempt}: ${d}`);
    }
  }
  // The delays grow with the attempts: deterministic at the top of the range.
  const top = [0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, 100, 1000, () => 0.999999));
  assert.deepEqual(top, [200, 300, 500, 900, 1000, 1000]);
  // Full jitter: draws spread over the range rather than sticking to an end.
  const draws = Array.from({ length: 400 }, () => backoffDelay(3, 100, 100000));
  assert.ok(Math.min(...draws) < 300 && Math.max(...draws) > 700, `${Math.min(...draws)}..${Math.max(...draws)}`);
});

test("after a close: reconnect or stop", () => {
  const cases = [
    [{ kick: "replaced", code: 4000 }, false, "replaced"],
    [{ err: "unauthorized", code: 1008 }, false, "unauthorized"],
    [{ code: 1008 }, false, "unauthorized"],
    [{ err: "bad-user", code: 1000 }, false, "bad-user"],
    [{ kick: "expired", code: 1008, renewable: false }, false, "expired"],
    [{ kick: "expired", code: 1008, renewable: true }, true, "expired"],
    [{ kick: "shutdown", code: 1001 }, true, "shutdown"],
    [{ kick: "slow", code: 1013 }, true, "slow"],
    [{ kick: "admin", code: 4000 }, true, "admin"],
    [{ kick: "idle", code: 4000 }, true, "idle"],
    [{ err: "draining", code: 1001 }, true, "draining"],
    [{ err: "server-full", code: 1000 }, true, "server-full"],
    [{ code: 1006 }, true, "cut"],
    [{ code: 1000 }, true, "closed"],
    [{ timeout: true, code: 1006 }, true, "timeout"],
  ];
  for (const [ended, reconnect, reason] of cases) {
    assert.deepEqual(afterClose(ended), { reconnect, reason }, JSON.stringify(ended));
  }
});

test("resubscribe plan: a plain subscription always subscribes plainly and is never lost", () => {
  const t = newTrack(false);
  assert.deepEqual(planSubscribe(t), { mode: "plain" });
  assert.deepEqual(onSubscribed(t, "plain", { topic: "a" }), {});
  assert.deepEqual(planSubscribe(t), { mode: "plain" });
  assert.deepEqual(onSubscribed(t, "plain", { topic: "a" }), {}, "a reconnect");
  assert.ok(acceptMessage(t, undefined));
});

test("resubscribe plan: recover against a gateway without history falls back, says so once, then reports lost", () => {
  const t = newTrack(true);
  assert.deepEqual(planSubscribe(t), { mode: "latest" });
  assert.deepEqual(onSubscribeRefused(t, "latest", "bad-topic"), { retry: "plain", noHistory: true });
  assert.deepEqual(onSubscribed(t, "plain", { topic: "a" }), {}, "nothing missed yet");
  // After a reconnect: positions are tried again, and refused again.
  assert.deepEqual(planSubscribe(t), { mode: "latest" });
  assert.deepEqual(onSubscribeRefused(t, "latest", "no-history"), { retry: "plain", noHistory: false });
  assert.deepEqual(onSubscribed(t, "plain", { topic: "a" }), { lost: { reason: "no-history" } });
  // A refusal of another kind is a failure, not a fallback.
  assert.deepEqual(onSubscribeRefused(t, "latest", "forbidden"), { failed: true });
  assert.deepEqual(onSubscribeRefused(t, "plain", "bad-topic"), { failed: true });
});

test("resubscribe plan: positions once history exists (contract section 13)", () => {
  const t = newTrack(true);
  assert.deepEqual(planSubscribe(t), { mode: "latest" });
  assert.deepEqual(onSubscribed(t, "latest", { position: { epoch: "e1", offset: 10 } }), {});
  assert.ok(acceptMessage(t, 11));
  assert.ok(acceptMessage(t, 13));
  assert.ok(!acceptMessage(t, 13), "a duplicate");
  assert.ok(!acceptMessage(t, 12), "an older one");
  // Reconnect: from the last offset delivered.
  assert.deepEqual(planSubscribe(t), { mode: "position", position: { epoch: "e1", offset: 13 } });
  assert.deepEqual(onSubscribed(t, "position", { position: { epoch: "e1", offset: 15 }, recovered: 2 }), { recovered: 2 });
  assert.ok(acceptMessage(t, 14), "replayed");
  assert.ok(acceptMessage(t, 15), "replayed");
  assert.ok(acceptMessage(t, 16), "live");
  // Reconnect after the gateway restarted: a new epoch, LOST.
  assert.deepEqual(planSubscribe(t), { mode: "position", position: { epoch: "e1", offset: 16 } });
  assert.deepEqual(onSubscribed(t, "position", { position: { epoch: "e2", offset: 3 }, lost: true }), {
    lost: { reason: "lost", position: { epoch: "e2", offset: 3 } },
  });
  assert.ok(!acceptMessage(t, 3));
  assert.ok(acceptMessage(t, 4));
  // A LOST frame mid-stream: go on from its position.
  assert.deepEqual(onLostFrame(t, { epoch: "e2", offset: 9 }), { lost: { reason: "gap", position: { epoch: "e2", offset: 9 } } });
  assert.ok(acceptMessage(t, 10));
  assert.deepEqual(planSubscribe(t), { mode: "position", position: { epoch: "e2", offset: 10 } });
});

test("resubscribe plan: a replay of RECOVERED n ends with its n-th message", () => {
  const t = newTrack(true);
  onSubscribed(t, "latest", { position: { epoch: "e1", offset: 4 } });
  assert.ok(!countReplayed(t), "a live message is no replay");
  assert.deepEqual(onSubscribed(t, "position", { position: { epoch: "e1", offset: 9 }, recovered: 2 }), { recovered: 2 });
  assert.ok(acceptMessage(t, 6));
  assert.ok(!countReplayed(t), "one of two");
  assert.ok(acceptMessage(t, 9));
  assert.ok(countReplayed(t), "two of two");
  assert.ok(acceptMessage(t, 10));
  assert.ok(!countReplayed(t), "live again");
  // A LOST answer or frame ends any replay.
  onSubscribed(t, "position", { position: { epoch: "e1", offset: 14 }, recovered: 3 });
  onLostFrame(t, { epoch: "e1", offset: 20 });
  assert.ok(!countReplayed(t));
});

test("resubscribe plan: ERR already-subscribed resubscribes once, then fails", () => {
  const t = newTrack(true);
  assert.deepEqual(onSubscribeRefused(t, "latest", "already-subscribed"), { resubscribe: true });
  assert.deepEqual(onSubscribeRefused(t, "latest", "already-subscribed", true), { failed: true });
  assert.deepEqual(onSubscribeRefused(newTrack(false), "plain", "already-subscribed"), { resubscribe: true });
});

test("resubscribe plan: LATEST after a connection without history reports lost", () => {
  const t = newTrack(true);
  onSubscribeRefused(t, "latest", "bad-topic");
  onSubscribed(t, "plain", {});
  assert.deepEqual(onSubscribed(t, "latest", { position: { epoch: "e1", offset: 4 } }), {
    lost: { reason: "no-history", position: { epoch: "e1", offset: 4 } },
  });
});

test("answers: matched in order, PUBs settled by the next answer", () => {
  const p = new Pending();
  p.push({ verb: "HELLO" });
  assert.deepEqual(p.answer({ type: "ok", verb: "HELLO", id: "1" }), { entry: { verb: "HELLO" } });
  p.push({ verb: "SUB", topic: "a" });
  p.push({ verb: "SUB", topic: "b" });
  assert.deepEqual(p.answer({ type: "err", code: "forbidden" }).entry, { verb: "SUB", topic: "a" });
  assert.deepEqual(p.answer({ type: "ok", verb: "SUB", topic: "b" }).entry, { verb: "SUB", topic: "b" });
  assert.deepEqual(p.answer({ type: "ok", verb: "SUB", topic: "c" }), { mismatch: true });
  assert.deepEqual(p.answer({ type: "err", code: "draining" }), { entry: undefined });
});

test("answers: a barrier PING comes between a PUB and an answered command", () => {
  const p = new Pending();
  assert.ok(!p.needsBarrier("SUB"));
  p.push({ verb: "PUB", topic: "a" });
  assert.ok(!p.needsBarrier("PUB"), "PUB after PUB");
  assert.ok(p.needsBarrier("SUB"), "SUB after PUB");
  assert.ok(p.needsBarrier("UNSUB"), "UNSUB after PUB");
  assert.ok(!p.needsBarrier("PING"), "a PING is a barrier itself");
  p.push({ verb: "PING" });
  assert.ok(!p.needsBarrier("SUB"));
  p.push({ verb: "SUB", topic: "b" });
  // The PUB's ERR, then the barrier's PONG, then the SUB's answer.
  assert.deepEqual(p.answer({ type: "err", code: "forbidden" }).entry, { verb: "PUB", topic: "a" });
  assert.deepEqual(p.answer({ type: "pong", payload: "" }).entry, { verb: "PING" });
  assert.deepEqual(p.answer({ type: "err", code: "forbidden" }).entry, { verb: "SUB", topic: "b" });
  assert.equal(p.length, 0);
  // PUBs that passed are dropped by the next answer.
  p.push({ verb: "PUB", topic: "a" });
  p.push({ verb: "PUB", topic: "b" });
  p.push({ verb: "PING" });
  assert.deepEqual(p.answer({ type: "pong", payload: "" }).entry, { verb: "PING" });
  assert.equal(p.length, 0);
  // An ERR in a run over several topics names none.
  p.push({ verb: "PUB", topic: "a" });
  p.push({ verb: "PUB", topic: "b" });
  assert.deepEqual(p.answer({ type: "err", code: "forbidden" }).entry, { verb: "PUB", topic: undefined });
});

test("answers: a long run of PUBs is closed by a barrier, so the list stays bounded", () => {
  const p = new Pending();
  let sent = 0;
  for (let i = 0; i < 1000; i++) {
    if (p.needsBarrier("PUB")) {
      p.push({ verb: "PING" });
      // The PONG comes back.
      p.answer({ type: "pong", payload: "" });
    }
    p.push({ verb: "PUB", topic: "t" });
    sent++;
    assert.ok(p.length <= MAX_PUB_RUN, `${p.length} waiting after ${sent}`);
  }
});

test("publish queue: bounded in count and bytes, refused past them, drained in order", () => {
  const q = new BoundedQueue(3, 10);
  assert.ok(q.push("a", 4));
  assert.ok(q.push("b", 4));
  assert.ok(!q.push("c", 4), "past the bytes");
  assert.ok(q.push("d", 2));
  assert.ok(!q.push("e", 0), "past the count");
  assert.equal(q.length, 3);
  assert.deepEqual(q.drain(), ["a", "b", "d"]);
  assert.equal(q.length, 0);
  assert.equal(q.bytes, 0);
  assert.ok(q.push("f", 10));
});
