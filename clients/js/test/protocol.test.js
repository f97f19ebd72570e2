// Frames as the gateway sends them (protocol sections 3 and 12, contract
// section 13), each read from a text message and from a binary one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFrame, parsePosition, pubFrame, subFrame, helloFrame, isTopic, isUser } from "../src/protocol.js";

const bytes = (s) => new TextEncoder().encode(s);

// Reads `frame` as text and as bytes; `expected` is the text reading, and
// the bytes reading is the same with payloads as bytes.
function check(frame, expected) {
  assert.deepEqual(parseFrame(frame), expected, `text: ${frame}`);
  const fromBytes = parseFrame(bytes(frame));
  const asBytes = { ...expected };
  if (expected.type === "unknown") asBytes.frame = bytes(frame);
  if (typeof expected.payload === "string" && expected.type !== "pong") asBytes.payload = bytes(expected.payload);
  assert.deepEqual(fromBytes, asBytes, `binary: ${frame}`);
}

test("MSG, plain and positioned", () => {
  check("MSG news hello world", { type: "msg", topic: "news", payload: "hello world" });
  check("MSG news ", { type: "msg", topic: "news", payload: "" });
  check("MSG chat/room-1 a  b ", { type: "msg", topic: "chat/room-1", payload: "a  b " });
  check("MSG news@42 hi", { type: "msg", topic: "news", offset: 42, payload: "hi" });
  check("MSG news@1 ", { type: "msg", topic: "news", offset: 1, payload: "" });
  check("MSG news", { type: "unknown", frame: "MSG news" });
  check("MSG news@ hi", { type: "unknown", frame: "MSG news@ hi" });
  check("MSG news@x1 hi", { type: "unknown", frame: "MSG news@x1 hi" });
  check("MSG news@99999999999999999999 hi", { type: "unknown", frame: "MSG news@99999999999999999999 hi" });
});

test("a binary payload stays bytes, invalid UTF-8 included", () => {
  const frame = new Uint8Array([...bytes("MSG t@7 "), 0xff, 0x00, 0x0a, 0x20]);
  const read = parseFrame(frame);
  assert.equal(read.topic, "t");
  assert.equal(read.offset, 7);
  assert.ok(read.payload instanceof Uint8Array);
  assert.deepEqual([...read.payload], [0xff, 0x00, 0x0a, 0x20]);
  const push = parseFrame(new Uint8Array([...bytes("PUSH "), 0xc3]));
  assert.deepEqual([...push.payload], [0xc3]);
});

test("PUSH, KICK, ERR, PONG, BYE", () => {
  check("PUSH you have mail", { type: "push", payload: "you have mail" });
  check("PUSH ", { type: "push", payload: "" });
  check("KICK replaced", { type: "kick", reason: "replaced" });
  check("KICK admin see you soon", { type: "kick", reason: "admin", message: "see you soon" });
  check("ERR unauthorized", { type: "err", code: "unauthorized" });
  check("ERR", { type: "unknown", frame: "ERR" });
  check("PONG", { type: "pong", payload: "" });
  check("PONG abc", { type: "pong", payload: "abc" });
  check("BYE", { type: "bye" });
  check("HELLO", { type: "unknown", frame: "HELLO" });
});

test("OK answers, the section 13 forms of OK SUB included", () => {
  check("OK HELLO n2.8ffce022-1", { type: "ok", verb: "HELLO", id: "n2.8ffce022-1" });
  check("OK UNSUB news", { type: "ok", verb: "UNSUB", topic: "news" });
  check("OK SUB news", { type: "ok", verb: "SUB", topic: "news" });
  check("OK SUB news e1:0", { type: "ok", verb: "SUB", topic: "news", position: { epoch: "e1", offset: 0 } });
  check("OK SUB news e1:12 RECOVERED 3", {
    type: "ok", verb: "SUB", topic: "news", position: { epoch: "e1", offset: 12 }, recovered: 3,
  });
  check("OK SUB news Ab_-9:12 LOST", {
    type: "ok", verb: "SUB", topic: "news", position: { epoch: "Ab_-9", offset: 12 }, lost: true,
  });
  for (const bad of [
    "OK SUB news e1", "OK SUB news e1:12 RECOVERED", "OK SUB news e1:12 RECOVERED x",
    "OK SUB news e1:12 LOST 1", "OK SUB news e1:12 FOUND", "OK SUB", "OK HELLO", "OK PING",
  ]) {
    check(bad, { type: "unknown", frame: bad });
  }
});

test("LOST frames", () => {
  check("LOST news e7:100", { type: "lost", topic: "news", position: { epoch: "e7", offset: 100 } });
  check("LOST news", { type: "unknown", frame: "LOST news" });
  check("LOST news 100", { type: "unknown", frame: "LOST news 100" });
  check("LOST bad@topic e1:1", { type: "unknown", frame: "LOST bad@topic e1:1" });
});

test("positions", () => {
  assert.deepEqual(parsePosition("e1:0"), { epoch: "e1", offset: 0 });
  assert.equal(parsePosition(":1"), undefined);
  assert.equal(parsePosition("e1:"), undefined);
  assert.equal(parsePosition("e1:-1"), undefined);
  assert.equal(parsePosition("e.1:1"), undefined);
  assert.equal(parsePosition(`${"a".repeat(33)}:1`), undefined);
  assert.deepEqual(parsePosition(`${"a".repeat(32)}:1`), { epoch: "a".repeat(32), offset: 1 });
});

test("commands", () => {
  assert.equal(helloFrame("alice"), "HELLO alice");
  assert.equal(helloFrame("alice", "t.o.k"), "HELLO alice t.o.k");
  assert.equal(subFrame("news", "plain"), "SUB news");
  assert.equal(subFrame("news", "latest"), "SUB news LATEST");
  assert.equal(subFrame("news", "position", { epoch: "e1", offset: 9 }), "SUB news e1:9");
  assert.equal(pubFrame("news", "a b"), "PUB news a b");
  assert.deepEqual([...pubFrame("t", new Uint8Array([0, 255]))], [...bytes("PUB t "), 0, 255]);
});

test("names", () => {
  assert.ok(isTopic("chat/room.1:a_b-c"));
  assert.ok(!isTopic(""));
  assert.ok(!isTopic("a b"));
  assert.ok(!isTopic("a@b"));
  assert.ok(!isTopic("x".repeat(257)));
  assert.ok(isUser("a@b.c"));
  assert.ok(!isUser("a/b"));
  assert.ok(!isUser("x".repeat(129)));
});
