// The gateway's browser client: an ES module with no dependencies.
// `GatewayClient` is the whole public surface; the pure parts are exported
// for tests and for whoever builds another client on them.

export { GatewayClient, GatewayError, Subscription } from "./client.js";
export { backoffCeiling, backoffDelay } from "./backoff.js";
export { afterClose } from "./policy.js";
export { formatPosition, isTopic, isUser, parseFrame, parsePosition } from "./protocol.js";
