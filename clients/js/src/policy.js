// What to do once a connection has ended: reconnect, or stop and say why.
// Pure: it reads what the connection's last frames and its Close said.

/**
 * Decides after a connection ended. `ended` holds what was seen last:
 * `kick` (the reason of a `KICK`), `err` (an `ERR` answering `HELLO`),
 * `code` (the WebSocket Close status; 1006 when there was no Close frame),
 * `timeout` (the client gave up on a silent connection) and `renewable` (whether a fresh token can be had: `getToken` was given).
 * Returns `{ reconnect, reason }`.
 *
 * No reconnect after `KICK replaced` (another login of the user won: a
 * reconnect would fight it), `ERR unauthorized` or a Close 1008 (the token
 * is refused: a reconnect would loop on it), `ERR bad-user`, or `KICK
 * expired` when the token cannot be renewed. Everything else reconnects:
 * `KICK shutdown` (1001), `KICK slow` (1013), an admin close, an idle kick,
 * a refused connection (`ERR server-full`, `ERR draining`), a cut, a
 * connection that went silent.
 */
export function afterClose({ kick, err, code, timeout, renewable }) {
  if (kick === "replaced") return { reconnect: false, reason: "replaced" };
  if (err === "unauthorized") return { reconnect: false, reason: "unauthorized" };
  if (err === "bad-user") return { reconnect: false, reason: "bad-user" };
  if (kick === "expired") return { reconnect: Boolean(renewable), reason: "expired" };
  if (code === 1008) return { reconnect: false, reason: "unauthorized" };
  if (kick || err) return { reconnect: true, reason: kick ?? err };
  if (timeout) return { reconnect: true, reason: "timeout" };
  return { reconnect: true, reason: code === 1006 ? "cut" : "closed" };
}
