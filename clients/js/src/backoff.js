// Reconnect delays: exponential backoff with full jitter. Pure.

/** The defaults, in milliseconds. */
export const MIN_DELAY = 500;
export const MAX_DELAY = 20000;

/**
 * The ceiling of the jitter for the `attempt`-th reconnect (0 for the
 * first): `minDelay * 2^attempt`, at most `maxDelay`.
 */
export function backoffCeiling(attempt, minDelay = MIN_DELAY, maxDelay = MAX_DELAY) {
  const step = Math.min(attempt, 30);
  return Math.min(maxDelay, minDelay * 2 ** step);
}

/**
 * The delay before the `attempt`-th reconnect: `minDelay` plus a uniform
 * draw in `[0, ceiling)` (full jitter), never over `maxDelay`. So every
 * delay lies in `[minDelay, maxDelay]`, and the range grows twofold with
 * each attempt until it meets `maxDelay`. `random` returns a number in
 * `[0, 1)`, as `Math.random` does.
 */
export function backoffDelay(attempt, minDelay = MIN_DELAY, maxDelay = MAX_DELAY, random = Math.random) {
  const jitter = random() * backoffCeiling(attempt, minDelay, maxDelay);
  return Math.round(Math.min(maxDelay, minDelay + jitter));
}
