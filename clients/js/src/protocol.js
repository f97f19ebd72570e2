// The gateway's wire protocol as data (docs/protocol.md sections 3, 12 and
// contract section 13): names checked, commands written, frames read. Pure:
// no socket, no timer. A frame is a string (a WebSocket text message) or a
// Uint8Array (a binary one); a payload keeps the form its frame had.

/** A user name: 1 to 128 bytes of `A-Z a-z 0-9 _ . : @ -` (section 3). */
export const USER = /^[A-Za-z0-9_.:@-]{1,128}$/;
/** A topic: 1 to 256 bytes of `A-Z a-z 0-9 _ . : / -` (section 3). */
export const TOPIC = /^[A-Za-z0-9_.:/-]{1,256}$/;
const EPOCH = /^[A-Za-z0-9_-]{1,32}$/;
const DIGITS = /^[0-9]+$/;

/** Whether `name` is a valid user name. */
export function isUser(name) {
  return typeof name === "string" && USER.test(name);
}

/** Whether `name` is a valid topic. */
export function isTopic(name) {
  return typeof name === "string" && TOPIC.test(name);
}

function offsetOf(text) {
  if (!DIGITS.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * `<epoch>:<offset>` (section 13) as `{ epoch, offset }`, or undefined when
 * it does not parse.
 */
export function parsePosition(text) {
  const colon = text.lastIndexOf(":");
  if (colon < 0) return undefined;
  const epoch = text.slice(0, colon);
  const offset = offsetOf(text.slice(colon + 1));
  if (!EPOCH.test(epoch) || offset === undefined) return undefined;
  return { epoch, offset };
}

/** A position as the wire writes it. */
export function formatPosition(position) {
  return `${position.epoch}:${position.offset}`;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Text of a string or of bytes (UTF-8, invalid bytes replaced). */
export function textOf(data) {
  return typeof data === "string" ? data : decoder.decode(data);
}

// Splits `data` after `count` space-separated fields: the fields as text and
// the rest in the frame's own form (string or Uint8Array), or `undefined`
// when there is no space after the last field.
function fields(data, count) {
  const out = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const space = typeof data === "string" ? data.indexOf(" ", at) : data.indexOf(0x20, at);
    if (space < 0) {
      out.push(textOf(data.slice(at)));
      return { fields: out, rest: undefined };
    }
    out.push(textOf(data.slice(at, space)));
    at = space + 1;
  }
  return { fields: out, rest: data.slice(at) };
}

function parseOkSub(words) {
  // OK SUB <topic> [<position> [RECOVERED <n> | LOST]]
  const [topic, pos, word, count] = words;
  if (!topic) return undefined;
  const answer = { type: "ok", verb: "SUB", topic };
  if (pos === undefined) return words.length === 1 ? answer : undefined;
  const position = parsePosition(pos);
  if (!position) return undefined;
  answer.position = position;
  if (word === undefined) return words.length === 2 ? answer : undefined;
  if (word === "LOST" && words.length === 3) return { ...answer, lost: true };
  if (word === "RECOVERED" && words.length === 4) {
    const n = offsetOf(count ?? "");
    if (n !== undefined) return { ...answer, recovered: n };
  }
  return undefined;
}

/**
 * One frame from the gateway, read:
 * - `{ type: "msg", topic, payload, offset? }` (`MSG <topic>[@<offset>] <payload>`)
 * - `{ type: "push", payload }`
 * - `{ type: "ok", verb: "HELLO", id }`, `{ type: "ok", verb: "UNSUB", topic }`
 * - `{ type: "ok", verb: "SUB", topic, position?, recovered?, lost? }`
 * - `{ type: "lost", topic, position }` (`LOST <topic> <position>`)
 * - `{ type: "kick", reason, message? }`, `{ type: "err", code }`
 * - `{ type: "pong", payload }`, `{ type: "bye" }`
 * - `{ type: "unknown", frame }` for anything else.
 * Payloads keep the frame's form: a string from a text frame, a Uint8Array
 * from a binary one.
 */
export function parseFrame(data) {
  const head = fields(data, 1);
  const verb = head.fields[0];
  const rest = head.rest;
  const unknown = { type: "unknown", frame: data };
  switch (verb) {
    case "MSG": {
      if (rest === undefined) return unknown;
      const msg = fields(rest, 1);
      if (msg.rest === undefined) return unknown;
      let topic = msg.fields[0];
      let offset;
      const at = topic.indexOf("@");
      if (at >= 0) {
        offset = offsetOf(topic.slice(at + 1));
        topic = topic.slice(0, at);
        if (offset === undefined) return unknown;
      }
      if (!isTopic(topic)) return unknown;
      const frame = { type: "msg", topic, payload: msg.rest };
      if (offset !== undefined) frame.offset = offset;
      return frame;
    }
    case "PUSH":
      return { type: "push", payload: rest ?? data.slice(data.length) };
    case "PONG":
      return { type: "pong", payload: rest === undefined ? "" : textOf(rest) };
    case "BYE":
      return rest === undefined ? { type: "bye" } : unknown;
  }
  // The other frames are short control lines: read them as text.
  const words = rest === undefined ? [] : textOf(rest).split(" ");
  switch (verb) {
    case "OK":
      if (words[0] === "HELLO" && words.length === 2 && words[1]) {
        return { type: "ok", verb: "HELLO", id: words[1] };
      }
      if (words[0] === "UNSUB" && words.length === 2 && words[1]) {
        return { type: "ok", verb: "UNSUB", topic: words[1] };
      }
      if (words[0] === "SUB") return parseOkSub(words.slice(1)) ?? unknown;
      return unknown;
    case "LOST": {
      const position = words.length === 2 ? parsePosition(words[1]) : undefined;
      return position && isTopic(words[0]) ? { type: "lost", topic: words[0], position } : unknown;
    }
    case "KICK": {
      if (rest === undefined || !words[0]) return unknown;
      const text = textOf(rest);
      const space = text.indexOf(" ");
      return space < 0
        ? { type: "kick", reason: text }
        : { type: "kick", reason: text.slice(0, space), message: text.slice(space + 1) };
    }
    case "ERR":
      return words.length === 1 && words[0] ? { type: "err", code: words[0] } : unknown;
    default:
      return unknown;
  }
}

/** `HELLO <user>` or `HELLO <user> <token>`. */
export function helloFrame(user, token) {
  return token ? `HELLO ${user} ${token}` : `HELLO ${user}`;
}

/**
 * The `SUB` for a subscription mode: `plain` (`SUB <topic>`), `latest`
 * (`SUB <topic> LATEST`) or `position` (`SUB <topic> <epoch>:<offset>`).
 */
export function subFrame(topic, mode, position) {
  if (mode === "latest") return `SUB ${topic} LATEST`;
  if (mode === "position") return `SUB ${topic} ${formatPosition(position)}`;
  return `SUB ${topic}`;
}

/**
 * `PUB <topic> <payload>`: a string for a string payload (a text message),
 * bytes for a Uint8Array one (a binary message).
 */
export function pubFrame(topic, data) {
  if (typeof data === "string") return `PUB ${topic} ${data}`;
  const head = encoder.encode(`PUB ${topic} `);
  const frame = new Uint8Array(head.length + data.length);
  frame.set(head, 0);
  frame.set(data, head.length);
  return frame;
}

/** How many bytes a frame takes on the wire (a string as UTF-8). */
export function frameBytes(frame) {
  return typeof frame === "string" ? encoder.encode(frame).length : frame.length;
}
