// Types for the gateway's browser client (src/index.js).

/** The states of a client, in the order a connection goes through them. */
export type State = "idle" | "connecting" | "connected" | "disconnected" | "closed";

/** A payload: a string from a text message, bytes from a binary one. */
export type Payload = string | Uint8Array;

/** A position in a topic's history (contract section 13): `{ epoch, offset }`. */
export interface Position {
  epoch: string;
  offset: number;
}

/** What `state` events carry, by state. */
export interface StateDetail {
  /** connecting: the URL tried and how many attempts failed before it. */
  url?: string;
  attempt?: number;
  /** connected: the connection id from `OK HELLO`. */
  id?: string;
  /** disconnected, closed: the WebSocket Close status (1006 when there was none). */
  code?: number;
  /**
   * disconnected: why (`admin`, `shutdown`, `slow`, `idle`, `expired`, `cut`,
   * `timeout`, `closed`, ...). closed: `client` after close(), else `replaced`,
   * `unauthorized`, `bad-user` or `expired`.
   */
  reason?: string;
  /** disconnected: the wait before the next attempt, in ms, and when it ends (Date.now() time). */
  delay?: number;
  retryAt?: number;
}

/** Why a subscription's continuity broke: reload what you build from the topic. */
export interface LostInfo {
  /**
   * `no-history`: resubscribed after a reconnect where the gateway keeps no
   * history, so what was published meanwhile is gone; `lost`: the gateway
   * could not recover from the last position; `gap`: a `LOST` frame.
   */
  reason: "no-history" | "lost" | "gap";
  /** The position the subscription goes on from, where the gateway gave one. */
  position?: Position;
}

export interface ClientOptions {
  /** The user to log in as: 1 to 128 bytes of `A-Z a-z 0-9 _ . : @ -`. */
  user: string;
  /** A fixed token (JWT) for `HELLO <user> <token>`. */
  token?: string;
  /** Called on every connect for a fresh token; may return a promise. */
  getToken?: () => string | Promise<string>;
  /** A WebSocket constructor (Node 18+: pass one, such as the `ws` package's). */
  WebSocket?: new (url: string) => WebSocket;
  /** The shortest wait before a reconnect, ms (500). */
  minDelay?: number;
  /** The longest wait before a reconnect, ms (20000). */
  maxDelay?: number;
  /** A source of randomness in [0, 1) for the jitter (Math.random). */
  random?: () => number;
  /** The bound on opening a connection and logging in, ms (10000). */
  connectTimeout?: number;
  /** After this long with nothing received, a `PING`, ms (25000); 0 for no heartbeat. */
  heartbeat?: number;
  /** When nothing at all answers the heartbeat's `PING` within this long, the connection is replaced, ms (10000). */
  heartbeatTimeout?: number;
  /** Publishes queued while disconnected, at most (1000). */
  maxQueued?: number;
  /** Bytes of publishes queued while disconnected, at most (1 MiB). */
  maxQueuedBytes?: number;
  /** Where `online` events come from (globalThis in a browser); null for none. */
  onlineEvents?: EventTarget | null;
}

/** An error the client reports; `code` is the gateway's `ERR` code or the client's own. */
export class GatewayError extends Error {
  /**
   * The gateway's code (`unauthorized`, `forbidden`, `bad-topic`, ...) or the
   * client's: `queue-full`, `closed`, `not-connected`, `disconnected`,
   * `unsent`, `token`, `connect`, `protocol`.
   */
  code: string;
  /** For a refused command: its verb and topic. */
  command?: string;
  topic?: string;
  /** For `unsent`: how many publishes were not sent. */
  count?: number;
}

export class Subscription {
  readonly topic: string;
  readonly recover: boolean;
  /** False once unsubscribed. */
  readonly active: boolean;
  /** The last position delivered, `<epoch>:<offset>`, once the gateway gives positions. */
  readonly position: string | undefined;
  /** A message on the topic; `offset` where the subscription is positioned. */
  on(event: "message", fn: (payload: Payload, offset: number | undefined) => void): this;
  /** Messages may have been missed: reload what you build from the topic. */
  on(event: "lost", fn: (info: LostInfo) => void): this;
  /** Each `OK SUB`, on every (re)subscribe. */
  on(event: "subscribed", fn: (info: { position?: string; recovered?: number }) => void): this;
  /**
   * A recovery is complete: the `count` messages the gateway replayed after a
   * reconnect (`OK SUB ... RECOVERED <count>`) reached `message`, in order;
   * `position` is the last one's. Not fired when the connection ended mid-replay:
   * the next reconnect recovers the rest.
   */
  on(event: "recovered", fn: (info: { count: number; position?: string }) => void): this;
  /** Once: `recover: true` but the gateway keeps no history for the topic; subscribed plainly. */
  on(event: "nohistory", fn: (code: string) => void): this;
  /** The gateway refused the subscription on this connection (`forbidden`, ...). */
  on(event: "error", fn: (error: GatewayError) => void): this;
  off(event: string, fn: (...args: any[]) => void): this;
  unsubscribe(): void;
}

export class GatewayClient {
  constructor(urls: string | string[], options: ClientOptions);
  readonly urls: string[];
  readonly user: string;
  readonly state: State;
  /** The id from `OK HELLO`, while connected. */
  readonly connectionId: string | undefined;
  /** The URL of the current or last connection. */
  readonly url: string | undefined;
  readonly minDelay: number;
  readonly maxDelay: number;
  connect(): this;
  close(): void;
  subscribe(topic: string, options?: { recover?: boolean }): Subscription;
  unsubscribe(subscription: Subscription | string): void;
  /** Throws a GatewayError `queue-full` or `closed` rather than drop a publish. */
  publish(topic: string, data: string | Uint8Array | ArrayBuffer | ArrayBufferView): void;
  /** Resolves with the round trip in ms. */
  ping(): Promise<number>;
  on(event: "state", fn: (state: State, detail: StateDetail) => void): this;
  on(event: "push", fn: (payload: Payload) => void): this;
  on(event: "kick", fn: (reason: string, message: string | undefined) => void): this;
  on(event: "error", fn: (error: GatewayError) => void): this;
  off(event: string, fn: (...args: any[]) => void): this;
}

export function backoffCeiling(attempt: number, minDelay?: number, maxDelay?: number): number;
export function backoffDelay(attempt: number, minDelay?: number, maxDelay?: number, random?: () => number): number;
export function afterClose(ended: { kick?: string; err?: string; code?: number; renewable?: boolean }): {
  reconnect: boolean;
  reason: string;
};
export function parseFrame(data: string | Uint8Array): { type: string; [field: string]: unknown };
export function parsePosition(text: string): Position | undefined;
export function formatPosition(position: Position): string;
export function isTopic(name: string): boolean;
export function isUser(name: string): boolean;
