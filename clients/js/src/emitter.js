// A small event emitter. A handler that throws does not stop the others
// nor the client: its exception is rethrown on its own, where the platform
// reports uncaught errors.

export class Emitter {
  constructor() {
    this._handlers = new Map();
  }

  /** Calls `fn` on every `event`; returns this. */
  on(event, fn) {
    let list = this._handlers.get(event);
    if (!list) this._handlers.set(event, (list = []));
    list.push(fn);
    return this;
  }

  /** Stops calling `fn` on `event`; returns this. */
  off(event, fn) {
    const list = this._handlers.get(event);
    const at = list ? list.indexOf(fn) : -1;
    if (at >= 0) list.splice(at, 1);
    return this;
  }

  _emit(event, ...args) {
    const list = this._handlers.get(event);
    if (!list) return;
    for (const fn of [...list]) {
      try {
        fn(...args);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
