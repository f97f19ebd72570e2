// GatewayClient against a fake WebSocket and fake timers: the frames it
// sends on each connection, what it does after each kind of close, and
// that nothing it holds grows without bound or outlives close().
import { test, mock } from "node:test";
import assert from "node:assert/strict";
import { GatewayClient } from "../src/index.js";

class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    this.closedWith = undefined;
    FakeSocket.all.push(this);
  }
  send(frame) {
    this.sent.push(frame);
  }
  close(code) {
    this.closedWith = code;
    this.readyState = 2;
  }
  // The gateway's side:
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  frame(data) {
    this.onmessage?.({ data });
  }
  end(code) {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

function setUp(t, options = {}) {
  FakeSocket.all = [];
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const events = [];
  const client = new GatewayClient(options.urls ?? "ws://gw/ws", {
    user: "alice",
    WebSocket: FakeSocket,
    random: () => 0.5,
    onlineEvents: options.onlineEvents ?? null,
    ...options,
  });
  client.on("state", (state, detail) => events.push(["state", state, detail]));
  client.on("error", (error) => events.push(["error", error.code]));
  client.on("kick", (reason, message) => events.push(["kick", reason, message]));
  const last = () => FakeSocket.all[FakeSocket.all.length - 1];
  // Lets the async connect (getToken) run.
  const settle = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  return { client, events, last, settle, states: () => events.filter((e) => e[0] === "state").map((e) => e[1]) };
}

async function login(s, id = "1") {
  await s.settle();
  const socket = s.last();
  socket.open();
  assert.match(socket.sent[0], /^HELLO alice/);
  socket.frame(`OK HELLO ${id}`);
  return socket;
}

test("connects, logs in, subscribes; resubscribes every subscription after a reconnect", async (t) => {
  const s = setUp(t);
  const news = s.client.subscribe("news");
  const got = [];
  news.on("message", (payload, offset) => got.push([payload, offset]));
  s.client.connect();
  const first = await login(s);
  assert.deepEqual(first.sent, ["HELLO alice", "SUB news"]);
  first.frame("OK SUB news");
  s.client.subscribe("sport");
  assert.deepEqual(first.sent.slice(2), ["SUB sport"]);
  first.frame("OK SUB sport");
  first.frame("MSG news one");
  first.frame(new TextEncoder().encode("MSG news \u00ff").buffer);
  first.frame("KICK admin bye");
  first.end(4000);
  assert.equal(s.client.state, "disconnected");
  // 500 + 0.5 * 500.
  t.mock.timers.tick(749);
  assert.equal(FakeSocket.all.length, 1);
  t.mock.timers.tick(1);
  const second = await login(s, "2");
  assert.deepEqual(second.sent, ["HELLO alice", "SUB news", "SUB sport"]);
  second.frame("OK SUB news");
  second.frame("MSG news two");
  assert.equal(got[0][0], "one");
  assert.ok(got[1][0] instanceof Uint8Array, "a binary message as bytes");
  assert.equal(got[2][0], "two");
  assert.deepEqual(s.states(), ["connecting", "connected", "disconnected", "connecting", "connected"]);
  assert.deepEqual(s.events.find((e) => e[0] === "kick"), ["kick", "admin", "bye"]);
  s.client.close();
});

test("recover: true against a gateway without history: plain SUB, said once, lost after a reconnect", async (t) => {
  const s = setUp(t);
  const sub = s.client.subscribe("news", { recover: true });
  const seen = [];
  sub.on("nohistory", (code) => seen.push(["nohistory", code]));
  sub.on("lost", (info) => seen.push(["lost", info.reason]));
  sub.on("message", (payload) => seen.push(["message", payload]));
  s.client.connect();
  const first = await login(s);
  assert.deepEqual(first.sent, ["HELLO alice", "SUB news LATEST"]);
  first.frame("ERR bad-topic");
  assert.deepEqual(first.sent.slice(2), ["SUB news"]);
  first.frame("OK SUB news");
  first.frame("MSG news a");
  first.end(1006);
  t.mock.timers.tick(750);
  const second = await login(s);
  assert.deepEqual(second.sent, ["HELLO alice", "SUB news LATEST"]);
  second.frame("ERR bad-topic");
  second.frame("OK SUB news");
  second.frame("MSG news b");
  assert.deepEqual(seen, [
    ["nohistory", "bad-topic"],
    ["message", "a"],
    ["lost", "no-history"],
    ["message", "b"],
  ]);
  s.client.close();
});

test("recover: true with history: SUB from the last offset, replay delivered, LOST reported", async (t) => {
  const s = setUp(t);
  const sub = s.client.subscribe("news", { recover: true });
  const seen = [];
  sub.on("lost", (info) => seen.push(["lost", info.reason, info.position]));
  sub.on("message", (payload, offset) => seen.push([payload, offset]));
  s.client.connect();
  const first = await login(s);
  first.frame("OK SUB news e1:5");
  first.frame("MSG news@6 a");
  first.end(1006);
  t.mock.timers.tick(750);
  const second = await login(s);
  assert.deepEqual(second.sent, ["HELLO alice", "SUB news e1:6"]);
  second.frame("OK SUB news e1:8 RECOVERED 2");
  second.frame("MSG news@7 b");
  second.frame("MSG news@8 c");
  second.frame("MSG news@8 c");
  second.frame("LOST news e1:20");
  second.frame("MSG news@21 d");
  assert.equal(sub.position, "e1:21");
  assert.deepEqual(seen, [["a", 6], ["b", 7], ["c", 8], ["lost", "gap", { epoch: "e1", offset: 20 }], ["d", 21]]);
  s.client.close();
});

test("publish: queued while disconnected up to the bound, then refused; sent after the resubscribe", async (t) => {
  const s = setUp(t, { maxQueued: 2 });
  s.client.subscribe("news");
  s.client.publish("news", "one");
  s.client.publish("news", new Uint8Array([1, 2]));
  assert.throws(() => s.client.publish("news", "three"), { code: "queue-full" });
  s.client.connect();
  const socket = await login(s);
  assert.equal(socket.sent[1], "SUB news");
  assert.equal(socket.sent[2], "PUB news one");
  assert.deepEqual([...socket.sent[3]], [...new TextEncoder().encode("PUB news "), 1, 2]);
  // A PUB's ERR is told apart from the next SUB's answer by a barrier PING.
  s.client.publish("news", "four");
  const sport = s.client.subscribe("sport");
  const refusals = [];
  sport.on("error", (error) => refusals.push(error.code));
  assert.deepEqual(socket.sent.slice(4), ["PUB news four", "PING", "SUB sport"]);
  socket.frame("OK SUB news");
  socket.frame("ERR forbidden");
  socket.frame("PONG");
  socket.frame("OK SUB sport");
  assert.deepEqual(refusals, []);
  assert.deepEqual(s.events.filter((e) => e[0] === "error"), [["error", "forbidden"]]);
  s.client.close();
  assert.throws(() => s.client.publish("news", "x"), { code: "closed" });
});

test("close() with publishes still queued reports them, and ends every timer", async (t) => {
  const s = setUp(t);
  s.client.connect();
  await s.settle();
  s.last().end(1006);
  assert.equal(s.client.state, "disconnected");
  s.client.publish("news", "x");
  s.client.close();
  assert.deepEqual(s.events.filter((e) => e[0] === "error"), [["error", "unsent"]]);
  t.mock.timers.tick(60 * 60 * 1000);
  await s.settle();
  assert.equal(FakeSocket.all.length, 1, "no reconnect after close()");
  assert.equal(s.client.state, "closed");
});

test("no reconnect after KICK replaced, ERR unauthorized or a Close 1008", async (t) => {
  for (const [frames, code, reason] of [
    [["KICK replaced"], 4000, "replaced"],
    [["ERR unauthorized"], 1008, "unauthorized"],
    [[], 1008, "unauthorized"],
  ]) {
    const s = setUp(t);
    s.client.connect();
    const socket = await login(s);
    for (const f of frames) socket.frame(f);
    socket.end(code);
    t.mock.timers.tick(60000);
    await s.settle();
    assert.equal(FakeSocket.all.length, 1, reason);
    assert.deepEqual(s.events.filter((e) => e[0] === "state").pop(), ["state", "closed", { reason, code }]);
    t.mock.timers.reset();
  }
});

test("KICK shutdown and KICK slow reconnect; KICK expired renews the token through getToken", async (t) => {
  for (const [kick, code] of [["shutdown", 1001], ["slow", 1013]]) {
    const s = setUp(t);
    s.client.connect();
    const socket = await login(s);
    socket.frame(`KICK ${kick}`);
    socket.end(code);
    t.mock.timers.tick(750);
    await s.settle();
    assert.equal(FakeSocket.all.length, 2, kick);
    s.client.close();
    t.mock.timers.reset();
  }
  let n = 0;
  const s = setUp(t, { getToken: async () => `token-${++n}` });
  s.client.connect();
  await s.settle();
  s.last().open();
  assert.equal(s.last().sent[0], "HELLO alice token-1");
  s.last().frame("OK HELLO 1");
  s.last().frame("KICK expired");
  s.last().end(1008);
  t.mock.timers.tick(750);
  await s.settle();
  s.last().open();
  assert.equal(s.last().sent[0], "HELLO alice token-2");
  s.client.close();
});

test("a URL list is tried in turn; the online event reconnects at once", async (t) => {
  const online = new EventTarget();
  const s = setUp(t, { urls: ["ws://one/ws", "ws://two/ws"], onlineEvents: online });
  s.client.connect();
  await s.settle();
  s.last().end(1006);
  t.mock.timers.tick(750);
  await s.settle();
  s.last().end(1006);
  // The second wait is longer: 500 + 0.5 * 1000.
  t.mock.timers.tick(999);
  assert.equal(FakeSocket.all.length, 2);
  online.dispatchEvent(new Event("online"));
  await s.settle();
  assert.deepEqual(FakeSocket.all.map((w) => w.url), ["ws://one/ws", "ws://two/ws", "ws://one/ws"]);
  s.client.close();
  online.dispatchEvent(new Event("online"));
  await s.settle();
  assert.equal(FakeSocket.all.length, 3, "close() removed the online listener");
});

test("a connection that never logs in is given up after connectTimeout", async (t) => {
  const s = setUp(t, { connectTimeout: 1000 });
  s.client.connect();
  await s.settle();
  s.last().open();
  t.mock.timers.tick(1000);
  assert.equal(s.client.state, "disconnected");
  assert.equal(s.last().closedWith, 1000);
  s.client.close();
});

test("ping resolves on its PONG and is refused when not connected", async (t) => {
  const s = setUp(t);
  await assert.rejects(s.client.ping(), { code: "not-connected" });
  s.client.connect();
  const socket = await login(s);
  const rtt = s.client.ping();
  t.mock.timers.tick(5);
  socket.frame("PONG");
  assert.equal(await rtt, 5);
  const pending = s.client.ping();
  socket.end(1006);
  await assert.rejects(pending, { code: "disconnected" });
  s.client.close();
});
