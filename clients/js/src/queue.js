// The publishes made while disconnected: bounded in count and in bytes.
// Past either bound a publish is refused, never dropped in silence. Pure.

/** A first-in first-out queue with a bound on its length and its bytes. */
export class BoundedQueue {
  /** `maxItems` items and `maxBytes` bytes at most. */
  constructor(maxItems, maxBytes) {
    this.maxItems = maxItems;
    this.maxBytes = maxBytes;
    this.items = [];
    this.bytes = 0;
  }

  /** How many items wait. */
  get length() {
    return this.items.length;
  }

  /**
   * Adds `item` of `size` bytes; false (and nothing added) when it would
   * pass a bound.
   */
  push(item, size) {
    if (this.items.length + 1 > this.maxItems || this.bytes + size > this.maxBytes) return false;
    this.items.push({ item, size });
    this.bytes += size;
    return true;
  }

  /** Removes and returns every item, oldest first. */
  drain() {
    const items = this.items.map((entry) => entry.item);
    this.items = [];
    this.bytes = 0;
    return items;
  }
}
