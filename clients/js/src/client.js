// The client: one WebSocket at a time, at the edge of the pure parts
// (protocol.js reads and writes frames, backoff.js times reconnects,
// policy.js decides whether to reconnect, plan.js says how to resubscribe,
// replies.js matches answers, queue.js bounds what waits). Everything
// here is wiring: sockets, timers and events.

import { BoundedQueue } from "./queue.js";
import { Emitter } from "./emitter.js";
import { MAX_DELAY, MIN_DELAY, backoffDelay } from "./backoff.js";
import { Pending } from "./replies.js";
import { afterClose } from "./policy.js";
import {
  acceptMessage,
  countReplayed,
  newTrack,
  onLostFrame,
  onSubscribeRefused,
  onSubscribed,
  planSubscribe,
} from "./plan.js";
import {
  formatPosition,
  frameBytes,
  helloFrame,
  isTopic,
  isUser,
  parseFrame,
  pubFrame,
  subFrame,
  textOf,
} from "./protocol.js";

const OPEN = 1;

/** An error the client reports: `code` is the gateway's `ERR` code or the client's own. */
export class GatewayError extends Error {
  constructor(code, message, details) {
    super(message ?? code);
    this.name = "GatewayError";
    this.code = code;
    if (details) Object.assign(this, details);
  }
}

/** One topic's subscription; made by `GatewayClient.subscribe`. */
export class Subscription extends Emitter {
  constructor(client, topic, recover) {
    super();
    this.client = client;
    this.topic = topic;
    this.recover = recover;
    this.active = true;
    this._track = newTrack(recover);
    // The `<n>` of the recovery under way, until its n messages are in.
    this._recovering = undefined;
  }

  /** The last position delivered, `<epoch>:<offset>`, once positions are known. */
  get position() {
    return this._track.position ? formatPosition(this._track.position) : undefined;
  }

  /** Ends the subscription (an `UNSUB` when connected). */
  unsubscribe() {
    this.client.unsubscribe(this);
  }
}

/** A connection to the gateway that reconnects, logs in and resubscribes on its own. */
export class GatewayClient extends Emitter {
  constructor(urls, options = {}) {
    super();
    this.urls = Array.isArray(urls) ? [...urls] : [urls];
    if (this.urls.length === 0 || !this.urls.every((u) => typeof u === "string" && /^wss?:\/\/./i.test(u))) {
      throw new TypeError("GatewayClient: a ws:// or wss:// URL, or a non-empty list of them");
    }
    if (!isUser(options.user)) throw new TypeError(`GatewayClient: not a valid user name: ${options.user}`);
    if (options.token !== undefined && options.getToken !== undefined) {
      throw new TypeError("GatewayClient: token or getToken, not both");
    }
    this.user = options.user;
    this._token = options.token;
    this._getToken = options.getToken;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("GatewayClient: no WebSocket here: pass one as options.WebSocket");
    }
    this.minDelay = options.minDelay ?? MIN_DELAY;
    this.maxDelay = options.maxDelay ?? MAX_DELAY;
    if (!(this.minDelay >= 0 && this.maxDelay >= this.minDelay)) {
      throw new RangeError("GatewayClient: 0 <= minDelay <= maxDelay");
    }
    this._random = options.random ?? Math.random;
    this._connectTimeout = options.connectTimeout ?? 10000;
    this._heartbeat = options.heartbeat ?? 25000;
    this._heartbeatTimeout = options.heartbeatTimeout ?? 10000;
    this._queue = new BoundedQueue(options.maxQueued ?? 1000, options.maxQueuedBytes ?? 1024 * 1024);
    this._online = options.onlineEvents ?? (typeof globalThis.addEventListener === "function" ? globalThis : undefined);
    this._onOnline = () => this._reconnectNow();
    /** `idle`, `connecting`, `connected`, `disconnected` or `closed`. */
    this.state = "idle";
    /** The id from `OK HELLO`, while connected. */
    this.connectionId = undefined;
    /** The URL of the current or last connection. */
    this.url = undefined;
    this._subs = new Map();
    // The subscriptions being restored on this connection: publishes wait for them.
    this._restoring = new Set();
    this._pending = new Pending();
    this._socket = null;
    this._retryTimer = null;
    this._connectTimer = null;
    this._beatTimer = null;
    // Frames received, and when the last one came: the heartbeat's clock.
    this._received = 0;
    this._lastReceived = 0;
    this._attempt = 0;
    this._urlIndex = 0;
    this._gen = 0;
    this._ended = {};
  }

  /** Starts connecting (and reconnecting, until `close()`); returns this. */
  connect() {
    if (this.state !== "idle" && this.state !== "closed") return this;
    this._online?.addEventListener("online", this._onOnline);
    this._attempt = 0;
    this._open();
    return this;
  }

  /** Closes for good: the socket, every timer, the `online` listener. */
  close() {
    if (this.state === "closed") return;
    this._shut("client", {});
  }

  /**
   * Subscribes to `topic` (now if connected, else on connecting); restored
   * after every reconnect. With `recover: true` it asks for positions.
   */
  subscribe(topic, { recover = false } = {}) {
    if (!isTopic(topic)) throw new TypeError(`not a valid topic: ${topic}`);
    const existing = this._subs.get(topic);
    if (existing) {
      if (existing.recover !== Boolean(recover)) {
        throw new GatewayError("already-subscribed", `already subscribed to ${topic} with recover: ${existing.recover}`);
      }
      return existing;
    }
    const sub = new Subscription(this, topic, Boolean(recover));
    this._subs.set(topic, sub);
    if (this._canSend()) this._subscribeNow(sub);
    return sub;
  }

  /** Ends a subscription, given it or its topic. */
  unsubscribe(subOrTopic) {
    const topic = typeof subOrTopic === "string" ? subOrTopic : subOrTopic?.topic;
    const sub = this._subs.get(topic);
    if (!sub || (typeof subOrTopic !== "string" && sub !== subOrTopic)) return;
    sub.active = false;
    this._subs.delete(topic);
    if (this._restoring.has(sub)) this._restored(sub);
    if (this._canSend()) this._command(`UNSUB ${topic}`, { verb: "UNSUB", topic });
  }

  /**
   * Publishes `data` (a string, a Uint8Array or an ArrayBuffer) on `topic`:
   * sent now when connected, else queued until connected. Throws a
   * GatewayError `queue-full` past the queue's bounds and `closed` after
   * `close()` or a final close: a publish is never dropped in silence.
   */
  publish(topic, data) {
    if (!isTopic(topic)) throw new TypeError(`not a valid topic: ${topic}`);
    if (data instanceof ArrayBuffer) data = new Uint8Array(data);
    else if (ArrayBuffer.isView(data) && !(data instanceof Uint8Array)) {
      data = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    }
    if (typeof data !== "string" && !(data instanceof Uint8Array)) {
      throw new TypeError("publish: data is a string, a Uint8Array or an ArrayBuffer");
    }
    if (this.state === "closed") throw new GatewayError("closed", "publish: the client is closed");
    const frame = pubFrame(topic, data);
    if (this._canSend() && this._restoring.size === 0) {
      this._command(frame, { verb: "PUB", topic });
      return;
    }
    if (!this._queue.push({ frame, topic }, frameBytes(frame))) {
      throw new GatewayError(
        "queue-full",
        `publish refused: ${this._queue.length} publishes (${this._queue.bytes} bytes) already wait for a connection`,
      );
    }
  }

  /** A `PING`; resolves with the round trip in milliseconds. */
  ping() {
    if (!this._canSend()) return Promise.reject(new GatewayError("not-connected", "ping: not connected"));
    return new Promise((resolve, reject) => {
      this._command("PING", { verb: "PING", sentAt: Date.now(), resolve, reject });
    });
  }

  // ---- connecting

  async _open() {
    this._clearTimers();
    const gen = ++this._gen;
    const url = this.urls[this._urlIndex % this.urls.length];
    this.url = url;
    this._ended = {};
    this._pending.clear();
    this._restoring.clear();
    this._setState("connecting", { url, attempt: this._attempt });
    if (gen !== this._gen) return;
    this._connectTimer = setTimeout(() => {
      this._ended.timeout = true;
      this._lost(gen, 1006);
    }, this._connectTimeout);
    let token = this._token;
    if (this._getToken) {
      try {
        token = await this._getToken();
      } catch (error) {
        if (gen !== this._gen) return;
        this._emit("error", new GatewayError("token", `getToken failed: ${error?.message ?? error}`, { cause: error }));
        this._ended.err = "token";
        this._lost(gen, 1006);
        return;
      }
      if (gen !== this._gen) return;
    }
    let socket;
    try {
      socket = new this._WebSocket(url);
    } catch (error) {
      this._emit("error", new GatewayError("connect", `cannot open ${url}: ${error?.message ?? error}`, { cause: error }));
      this._lost(gen, 1006);
      return;
    }
    socket.binaryType = "arraybuffer";
    this._socket = socket;
    socket.onopen = () => {
      if (gen === this._gen) this._command(helloFrame(this.user, token), { verb: "HELLO" });
    };
    socket.onmessage = (event) => {
      if (gen === this._gen) this._receive(event.data);
    };
    socket.onclose = (event) => this._lost(gen, event.code);
    socket.onerror = () => {};
  }

  _connected(id) {
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this.connectionId = id;
    this._attempt = 0;
    this._startHeartbeat();
    const gen = this._gen;
    // The SUBs go out before `connected` is told: a handler that subscribes
    // or publishes then neither sends a second SUB for a topic (a
    // positioned one would be `ERR already-subscribed`) nor publishes ahead
    // of the resubscribe.
    for (const sub of [...this._subs.values()]) {
      if (gen !== this._gen) return;
      this._restoring.add(sub);
      this._subscribeNow(sub);
    }
    this._setState("connected", { id, url: this.url });
    if (gen !== this._gen) return;
    this._restored(undefined);
  }

  // `sub` is settled on this connection (subscribed or refused): once all
  // are, what was published while disconnected goes out, in order.
  _restored(sub) {
    if (sub) this._restoring.delete(sub);
    if (this._restoring.size > 0 || !this._canSend()) return;
    const gen = this._gen;
    for (const { frame, topic } of this._queue.drain()) {
      if (gen !== this._gen) return;
      this._command(frame, { verb: "PUB", topic });
    }
  }

  // The connection `gen` ended (`code`: the Close status, 1006 for none).
  _lost(gen, code) {
    if (gen !== this._gen) return;
    this._gen++;
    this._dropSocket();
    this._failPending("disconnected");
    this.connectionId = undefined;
    const decision = afterClose({ ...this._ended, code, renewable: Boolean(this._getToken) });
    if (!decision.reconnect) {
      this._shut(decision.reason, { code });
      return;
    }
    const delay = backoffDelay(this._attempt, this.minDelay, this.maxDelay, this._random);
    this._attempt++;
    this._urlIndex = (this._urlIndex + 1) % this.urls.length;
    const retryAt = Date.now() + delay;
    this._clearTimers();
    this._retryTimer = setTimeout(() => this._open(), delay);
    this._setState("disconnected", { code, reason: decision.reason, delay, retryAt, attempt: this._attempt });
  }

  _reconnectNow() {
    if (this.state === "disconnected") this._open();
  }

  // Ends for good: `reason` is `client` for close(), else why the gateway ended it.
  _shut(reason, detail) {
    this._gen++;
    this._clearTimers();
    this._online?.removeEventListener("online", this._onOnline);
    this._dropSocket();
    this._failPending(reason === "client" ? "closed" : "disconnected");
    this.connectionId = undefined;
    const unsent = this._queue.drain();
    this.state = "closed";
    if (unsent.length > 0) {
      this._emit(
        "error",
        new GatewayError("unsent", `${unsent.length} queued publishes were not sent: the client closed`, {
          count: unsent.length,
        }),
      );
    }
    this._emit("state", "closed", { reason, ...detail });
  }

  _dropSocket() {
    const socket = this._socket;
    this._socket = null;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    if (socket.readyState <= OPEN) {
      try {
        socket.close(1000);
      } catch {
        // Already closing.
      }
    }
  }

  _clearTimers() {
    clearTimeout(this._retryTimer);
    clearTimeout(this._connectTimer);
    clearTimeout(this._beatTimer);
    this._retryTimer = this._connectTimer = this._beatTimer = null;
  }

  // The heartbeat: after `heartbeat` ms with nothing received, a PING; when
  // nothing at all comes back within `heartbeatTimeout` ms, the connection
  // is taken for dead (a network that dropped it without a word, a laptop
  // that slept) and replaced.
  _startHeartbeat() {
    if (!(this._heartbeat > 0)) return;
    const gen = this._gen;
    // The PING in flight: when it went, and the frames received before it.
    let ping;
    const beat = () => {
      if (gen !== this._gen) return;
      const now = Date.now();
      if (ping && this._received !== ping.received) ping = undefined;
      if (ping && now - ping.at >= this._heartbeatTimeout) {
        this._ended.timeout = true;
        this._lost(gen, 1006);
        return;
      }
      if (!ping && now - this._lastReceived >= this._heartbeat && this._canSend()) {
        ping = { at: now, received: this._received };
        this._command("PING", { verb: "PING" });
      }
      const due = ping ? ping.at + this._heartbeatTimeout : this._lastReceived + this._heartbeat;
      this._beatTimer = setTimeout(beat, Math.max(due - now, 1));
    };
    this._beatTimer = setTimeout(beat, this._heartbeat);
  }

  _failPending(code) {
    for (const entry of this._pending.clear()) {
      entry.reject?.(new GatewayError(code, `ping: ${code} before the PONG`));
    }
  }

  _setState(state, detail) {
    this.state = state;
    this._emit("state", state, detail);
  }

  // ---- sending

  // Whether a command sent now reaches a logged-in connection that is not closing.
  _canSend() {
    return (
      this.state === "connected" &&
      this._socket?.readyState === OPEN &&
      this._ended.kick === undefined &&
      !this._ended.bye
    );
  }

  _command(frame, entry) {
    if (this._pending.needsBarrier(entry.verb)) {
      this._socket.send("PING");
      this._pending.push({ verb: "PING" });
    }
    this._socket.send(frame);
    this._pending.push(entry);
  }

  // `mode`: a fallback's (else the plan's); `again`: the second try after
  // `ERR already-subscribed`.
  _subscribeNow(sub, mode, again = false) {
    const plan = mode ? { mode } : planSubscribe(sub._track);
    sub._recovering = undefined;
    sub._track.replaying = 0;
    this._command(subFrame(sub.topic, plan.mode, plan.position), {
      verb: "SUB",
      topic: sub.topic,
      mode: plan.mode,
      sub,
      again,
    });
  }

  // ---- receiving

  _receive(data) {
    this._received++;
    this._lastReceived = Date.now();
    if (typeof data !== "string") {
      if (!(data instanceof ArrayBuffer)) return;
      data = new Uint8Array(data);
    }
    const frame = parseFrame(data);
    switch (frame.type) {
      case "msg": {
        const sub = this._subs.get(frame.topic);
        if (!sub || !acceptMessage(sub._track, frame.offset)) return;
        sub._emit("message", frame.payload, frame.offset);
        if (frame.offset !== undefined && countReplayed(sub._track)) this._recoveryDone(sub);
        return;
      }
      case "push":
        this._emit("push", frame.payload);
        return;
      case "kick":
        this._ended.kick = frame.reason;
        this._emit("kick", frame.reason, frame.message);
        return;
      case "lost": {
        const sub = this._subs.get(frame.topic);
        if (sub) sub._emit("lost", onLostFrame(sub._track, frame.position).lost);
        return;
      }
      case "bye":
        this._ended.bye = true;
        return;
      case "ok":
      case "pong":
      case "err":
        this._answer(frame);
        return;
      default:
        this._emit("error", new GatewayError("protocol", `unexpected frame: ${textOf(frame.frame).slice(0, 200)}`));
    }
  }

  _answer(frame) {
    const { entry, mismatch } = this._pending.answer(frame);
    if (mismatch) {
      this._emit("error", new GatewayError("protocol", `an answer no command asked for: ${frame.type} ${frame.verb ?? ""}`));
      return;
    }
    if (frame.type === "err") {
      this._refused(entry, frame.code);
      return;
    }
    if (frame.type === "pong") {
      entry.resolve?.(Date.now() - entry.sentAt);
      return;
    }
    if (frame.verb === "HELLO") this._connected(frame.id);
    else if (frame.verb === "SUB") this._subscribed(entry, frame);
  }

  _refused(entry, code) {
    const verb = entry?.verb;
    if (verb === undefined || verb === "HELLO") {
      // A refused login or connection: it ends here; the decision is on close.
      this._ended.err = code;
      this._emit("error", new GatewayError(code, verb ? `HELLO refused: ${code}` : `refused: ${code}`));
      this._socket?.close(1000);
      return;
    }
    if (verb === "SUB") {
      const sub = entry.sub;
      if (!sub.active) return;
      const outcome = onSubscribeRefused(sub._track, entry.mode, code, entry.again);
      if (outcome.resubscribe) {
        this._command(`UNSUB ${sub.topic}`, { verb: "UNSUB", topic: sub.topic });
        this._subscribeNow(sub, undefined, true);
      } else if (outcome.retry) {
        if (outcome.noHistory) sub._emit("nohistory", code);
        this._subscribeNow(sub, outcome.retry);
      } else {
        sub._emit("error", new GatewayError(code, `SUB ${sub.topic} refused: ${code}`));
        this._restored(sub);
      }
      return;
    }
    const what = verb === "PUB" ? `publish${entry.topic ? ` on ${entry.topic}` : ""}` : `${verb} ${entry.topic ?? ""}`;
    const error = new GatewayError(code, `${what} refused: ${code}`, { command: verb, topic: entry.topic });
    if (entry.reject) entry.reject(error);
    else this._emit("error", error);
  }

  _subscribed(entry, answer) {
    const sub = entry.sub;
    if (!sub.active) return;
    const outcome = onSubscribed(sub._track, entry.mode, answer);
    sub._emit("subscribed", { position: sub.position, recovered: outcome.recovered });
    if (outcome.lost) sub._emit("lost", outcome.lost);
    if (outcome.recovered !== undefined) {
      sub._recovering = outcome.recovered;
      if (outcome.recovered === 0) this._recoveryDone(sub);
    }
    if (this._restoring.has(sub)) this._restored(sub);
  }

  // Every message of a recovery was delivered: `recovered` with their count.
  _recoveryDone(sub) {
    const count = sub._recovering;
    sub._recovering = undefined;
    if (count !== undefined && sub.active) sub._emit("recovered", { count, position: sub.position });
  }
}
