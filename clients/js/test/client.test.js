// GatewayClient against a fake WebSocket and fake timers: the frames it
// sends on each connection, what it does after each kind of close, and
// that nothing it holds grows without bound or outlives close(). The
// clock is faked by hand (not with node:test's mock timers), so that these
// run on Node 18, Debian 12's.
import { test } from "node:test";
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

// setTimeout, clearTimeout and Date.now, replaced until restore().
function fakeClock() {
  const real = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout, now: Date.now };
  const timers = new Map();
  let now = 1_000_000;
  let seq = 0;
  globalThis.setTimeout = (fn, ms) => {
    timers.set(++seq, { at: now + Math.max(0, ms ?? 0), fn });
    return seq;
  };
  globalThis.clearTimeout = (id) => timers.delete(id);
  Date.now = () => now;
  return {
    // Runs every timer due within `ms`, in time order, moving the clock on.
    tick(ms) {
      const end = now + ms;
      for (;;) {
        let next;
        for (const [id, timer] of timers) {
          if (timer.at <= end && (!next || timer.at < next[1].at)) next = [id, timer];
        }
        if (!next) break;
        timers.delete(next[0]);
        now = next[1].at;
        next[1].fn();
      }
      now = end;
    },
    pending: () => timers.size,
    restore() {
      globalThis.setTimeout = real.setTimeout;
      globalThis.clearTimeout = real.clearTimeout;
      Date.now = real.now;
    },
  };
}

// A test with a fake clock: `body(clock)`.
function clientTest(name, body) {
  test(name, async () => {
    const clock = fakeClock();
    try {
      await body(clock);
    } finally {
      clock.restore();
    }
  });
}

function setUp(options = {}) {
  FakeSocket.all = [];
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

clientTest("connects, logs in, subscribes; resubscribes every subscription after a reconnect", async (clock) => {
  const s = setUp();
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
  clock.tick(749);
  assert.equal(FakeSocket.all.length, 1);
  clock.tick(1);
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

clientTest("recover: true against a gateway without history: plain SUB, said once, lost after a reconnect", async (clock) => {
  const s = setUp();
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
  clock.tick(750);
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

clientTest("recover: true with history: SUB from the last offset, replay delivered, LOST reported", async (clock) => {
  const s = setUp();
  const sub = s.client.subscribe("news", { recover: true });
  const seen = [];
  sub.on("lost", (info) => seen.push(["lost", info.reason, info.position]));
  sub.on("message", (payload, offset) => seen.push([payload, offset]));
  s.client.connect();
  const first = await login(s);
  first.frame("OK SUB news e1:5");
  first.frame("MSG news@6 a");
  first.end(1006);
  clock.tick(750);
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

clientTest("recover: the replay ends with recovered and its count; RECOVERED 0 at once; none after a LOST", async (clock) => {
  const s = setUp();
  const sub = s.client.subscribe("news", { recover: true });
  const seen = [];
  sub.on("message", (payload, offset) => seen.push([payload, offset]));
  sub.on("recovered", (info) => seen.push(["recovered", info.count, info.position]));
  sub.on("lost", (info) => seen.push(["lost", info.reason]));
  s.client.connect();
  const first = await login(s);
  first.frame("OK SUB news e1:5");
  first.end(1006);
  clock.tick(750);
  const second = await login(s);
  assert.deepEqual(second.sent, ["HELLO alice", "SUB news e1:5"]);
  second.frame("OK SUB news e1:9 RECOVERED 2");
  second.frame("MSG news@7 b");
  assert.deepEqual(seen, [["b", 7]], "not complete after one of two");
  second.frame("MSG news@9 c");
  second.frame("MSG news@10 live");
  assert.deepEqual(seen, [["b", 7], ["c", 9], ["recovered", 2, "e1:9"], ["live", 10]]);
  second.end(1006);
  clock.tick(750);
  const third = await login(s);
  assert.deepEqual(third.sent, ["HELLO alice", "SUB news e1:10"]);
  third.frame("OK SUB news e1:10 RECOVERED 0");
  assert.deepEqual(seen.slice(4), [["recovered", 0, "e1:10"]]);
  third.end(1006);
  clock.tick(750);
  const fourth = await login(s);
  fourth.frame("OK SUB news e2:3 LOST");
  fourth.frame("MSG news@4 new");
  assert.deepEqual(seen.slice(5), [["lost", "lost"], ["new", 4]]);
  s.client.close();
});

clientTest("recover: a subscribe from the connected handler sends one SUB, not a second one that the gateway refuses", async () => {
  const s = setUp();
  s.client.subscribe("news", { recover: true });
  s.client.on("state", (state) => {
    if (state === "connected") {
      s.client.subscribe("news", { recover: true });
      s.client.subscribe("other", { recover: true });
      s.client.publish("other", "hi");
    }
  });
  s.client.connect();
  const socket = await login(s);
  assert.deepEqual(socket.sent, ["HELLO alice", "SUB news LATEST", "SUB other LATEST"]);
  socket.frame("OK SUB news e1:0");
  socket.frame("OK SUB other e1:0");
  assert.deepEqual(socket.sent.slice(3), ["PUB other hi"], "the publish waited for the SUBs");
  s.client.close();
});

clientTest("recover: ERR already-subscribed: UNSUB, then the SUB from the position again; a second refusal is reported", async (clock) => {
  const s = setUp();
  const sub = s.client.subscribe("news", { recover: true });
  const errors = [];
  sub.on("error", (error) => errors.push(error.code));
  s.client.connect();
  const first = await login(s);
  first.frame("OK SUB news e1:5");
  first.frame("MSG news@6 a");
  first.end(1006);
  clock.tick(750);
  const second = await login(s);
  second.frame("ERR already-subscribed");
  assert.deepEqual(second.sent, ["HELLO alice", "SUB news e1:6", "UNSUB news", "SUB news e1:6"]);
  second.frame("OK UNSUB news");
  second.frame("ERR already-subscribed");
  assert.deepEqual(errors, ["already-subscribed"]);
  assert.equal(second.sent.length, 4, "no loop");
  second.end(1006);
  clock.tick(750);
  const third = await login(s);
  third.frame("ERR already-subscribed");
  assert.deepEqual(third.sent.slice(2), ["UNSUB news", "SUB news e1:6"], "tried again on each connection");
  s.client.close();
});

clientTest("publish: queued while disconnected up to the bound, then refused; sent after the resubscribe", async (clock) => {
  const s = setUp({ maxQueued: 2 });
  s.client.subscribe("news");
  s.client.publish("news", "one");
  s.client.publish("news", new Uint8Array([1, 2]));
  assert.throws(() => s.client.publish("news", "three"), { code: "queue-full" });
  s.client.connect();
  const socket = await login(s);
  assert.deepEqual(socket.sent, ["HELLO alice", "SUB news"], "publishes wait for the subscriptions");
  socket.frame("OK SUB news");
  assert.equal(socket.sent[2], "PUB news one");
  assert.deepEqual([...socket.sent[3]], [...new TextEncoder().encode("PUB news "), 1, 2]);
  // A PUB's ERR is told apart from the next SUB's answer by a barrier PING.
  s.client.publish("news", "four");
  const sport = s.client.subscribe("sport");
  const refusals = [];
  sport.on("error", (error) => refusals.push(error.code));
  assert.deepEqual(socket.sent.slice(4), ["PUB news four", "PING", "SUB sport"]);
  socket.frame("ERR forbidden");
  socket.frame("PONG");
  socket.frame("OK SUB sport");
  assert.deepEqual(refusals, []);
  assert.deepEqual(s.events.filter((e) => e[0] === "error"), [["error", "forbidden"]]);
  s.client.close();
  assert.throws(() => s.client.publish("news", "x"), { code: "closed" });
});

clientTest("close() with publishes still queued reports them, and ends every timer", async (clock) => {
  const s = setUp();
  s.client.connect();
  await s.settle();
  s.last().end(1006);
  assert.equal(s.client.state, "disconnected");
  s.client.publish("news", "x");
  s.client.close();
  assert.deepEqual(s.events.filter((e) => e[0] === "error"), [["error", "unsent"]]);
  clock.tick(60 * 60 * 1000);
  await s.settle();
  assert.equal(FakeSocket.all.length, 1, "no reconnect after close()");
  assert.equal(s.client.state, "closed");
});

clientTest("no reconnect after KICK replaced, ERR unauthorized or a Close 1008", async (clock) => {
  for (const [frames, code, reason] of [
    [["KICK replaced"], 4000, "replaced"],
    [["ERR unauthorized"], 1008, "unauthorized"],
    [[], 1008, "unauthorized"],
  ]) {
    const s = setUp();
    s.client.connect();
    const socket = await login(s);
    for (const f of frames) socket.frame(f);
    socket.end(code);
    clock.tick(60000);
    await s.settle();
    assert.equal(FakeSocket.all.length, 1, reason);
    assert.deepEqual(s.events.filter((e) => e[0] === "state").pop(), ["state", "closed", { reason, code }]);
  }
});

clientTest("KICK shutdown and KICK slow reconnect; KICK expired renews the token through getToken", async (clock) => {
  for (const [kick, code] of [["shutdown", 1001], ["slow", 1013]]) {
    const s = setUp();
    s.client.connect();
    const socket = await login(s);
    socket.frame(`KICK ${kick}`);
    socket.end(code);
    clock.tick(750);
    await s.settle();
    assert.equal(FakeSocket.all.length, 2, kick);
    s.client.close();
  }
  let n = 0;
  const s = setUp({ getToken: async () => `token-${++n}` });
  s.client.connect();
  await s.settle();
  s.last().open();
  assert.equal(s.last().sent[0], "HELLO alice token-1");
  s.last().frame("OK HELLO 1");
  s.last().frame("KICK expired");
  s.last().end(1008);
  clock.tick(750);
  await s.settle();
  s.last().open();
  assert.equal(s.last().sent[0], "HELLO alice token-2");
  s.client.close();
});

clientTest("a URL list is tried in turn; the online event reconnects at once", async (clock) => {
  const online = new EventTarget();
  const s = setUp({ urls: ["ws://one/ws", "ws://two/ws"], onlineEvents: online });
  s.client.connect();
  await s.settle();
  s.last().end(1006);
  clock.tick(750);
  await s.settle();
  s.last().end(1006);
  // The second wait is longer: 500 + 0.5 * 1000.
  clock.tick(999);
  assert.equal(FakeSocket.all.length, 2);
  online.dispatchEvent(new Event("online"));
  await s.settle();
  assert.deepEqual(FakeSocket.all.map((w) => w.url), ["ws://one/ws", "ws://two/ws", "ws://one/ws"]);
  s.client.close();
  online.dispatchEvent(new Event("online"));
  await s.settle();
  assert.equal(FakeSocket.all.length, 3, "close() removed the online listener");
});

clientTest("a connection that never logs in is given up after connectTimeout", async (clock) => {
  const s = setUp({ connectTimeout: 1000 });
  s.client.connect();
  await s.settle();
  s.last().open();
  clock.tick(1000);
  assert.equal(s.client.state, "disconnected");
  assert.equal(s.last().closedWith, 1000);
  assert.equal(s.events.filter((e) => e[1] === "disconnected")[0][2].reason, "timeout");
  s.client.close();
});

clientTest("a getToken that fails is reported, and tried again after a wait", async (clock) => {
  let calls = 0;
  const s = setUp({
    getToken: async () => {
      calls++;
      if (calls === 1) throw new Error("no session");
      return "t";
    },
  });
  s.client.connect();
  await s.settle();
  assert.equal(FakeSocket.all.length, 0);
  assert.deepEqual(s.events.filter((e) => e[0] === "error"), [["error", "token"]]);
  assert.equal(s.events.filter((e) => e[1] === "disconnected")[0][2].reason, "token");
  clock.tick(750);
  await s.settle();
  s.last().open();
  assert.equal(s.last().sent[0], "HELLO alice t");
  s.client.close();
});

clientTest("URLs are checked at once", async () => {
  assert.throws(() => new GatewayClient("http://gw/ws", { user: "a", WebSocket: FakeSocket }), TypeError);
  assert.throws(() => new GatewayClient([], { user: "a", WebSocket: FakeSocket }), TypeError);
  assert.throws(() => new GatewayClient("ws://gw/ws", { user: "a b", WebSocket: FakeSocket }), TypeError);
});

clientTest("ping resolves on its PONG and is refused when not connected", async (clock) => {
  const s = setUp();
  await assert.rejects(s.client.ping(), { code: "not-connected" });
  s.client.connect();
  const socket = await login(s);
  const rtt = s.client.ping();
  clock.tick(5);
  socket.frame("PONG");
  assert.equal(await rtt, 5);
  const pending = s.client.ping();
  socket.end(1006);
  await assert.rejects(pending, { code: "disconnected" });
  s.client.close();
});

clientTest("publishes made while disconnected go out once every subscription is settled, fallbacks included", async () => {
  const s = setUp();
  s.client.subscribe("news", { recover: true });
  s.client.subscribe("secret");
  s.client.publish("news", "queued");
  s.client.connect();
  const socket = await login(s);
  assert.deepEqual(socket.sent, ["HELLO alice", "SUB news LATEST", "SUB secret"]);
  socket.frame("ERR bad-topic");
  s.client.publish("news", "while restoring");
  socket.frame("ERR forbidden");
  assert.deepEqual(socket.sent.slice(3), ["SUB news"]);
  socket.frame("OK SUB news");
  assert.deepEqual(socket.sent.slice(4), ["PUB news queued", "PUB news while restoring"]);
  s.client.publish("news", "live");
  assert.deepEqual(socket.sent.slice(6), ["PUB news live"]);
  s.client.close();
});

clientTest("heartbeat: a PING after a quiet spell; a connection silent past the timeout is replaced", async (clock) => {
  const s = setUp({ heartbeat: 1000, heartbeatTimeout: 500 });
  s.client.connect();
  const socket = await login(s);
  clock.tick(600);
  socket.frame("PUSH something");
  clock.tick(999);
  assert.deepEqual(socket.sent, ["HELLO alice"], "nothing while frames come");
  clock.tick(1);
  assert.deepEqual(socket.sent, ["HELLO alice", "PING"]);
  clock.tick(400);
  socket.frame("PONG");
  clock.tick(999);
  assert.equal(s.client.state, "connected");
  assert.deepEqual(socket.sent.slice(2), [], "the PONG counts as traffic");
  clock.tick(1);
  assert.deepEqual(socket.sent.slice(2), ["PING"]);
  clock.tick(499);
  assert.equal(s.client.state, "connected");
  clock.tick(1);
  assert.equal(s.client.state, "disconnected");
  assert.equal(socket.closedWith, 1000);
  assert.equal(s.events.filter((e) => e[1] === "disconnected")[0][2].reason, "timeout");
  s.client.close();
});
