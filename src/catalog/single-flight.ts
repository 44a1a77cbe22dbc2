/**
 * Keyed promise sharing. `SingleFlight.run`: concurrent callers of one key share one call, forgotten
 * once it settles. `PromiseMemo.get`: the same, but a fulfilled promise is kept (failures are
 * forgotten so the next caller retries).
 */
export class SingleFlight<K, V> {
  readonly #inFlight = new Map<K, Promise<V>>();

  run(key: K, fn: () => Promise<V>): Promise<V> {
    let p = this.#inFlight.get(key);
    if (!p) {
      p = fn();
      this.#inFlight.set(key, p);
      const done = (): void => {
        this.#inFlight.delete(key);
      };
      p.then(done, done);
    }
    return p;
  }

  /** The call in flight for `key`, if any. */
  get(key: K): Promise<V> | undefined {
    return this.#inFlight.get(key);
  }

  has(key: K): boolean {
    return this.#inFlight.has(key);
  }
}

export class PromiseMemo<K, V> {
  readonly #memo = new Map<K, Promise<V>>();

  get(key: K, make: () => Promise<V>): { promise: Promise<V>; fresh: boolean } {
    const hit = this.#memo.get(key);
    if (hit) return { promise: hit, fresh: false };
    const p = make();
    this.#memo.set(key, p);
    p.catch(() => {
      if (this.#memo.get(key) === p) this.#memo.delete(key);
    });
    return { promise: p, fresh: true };
  }

  /** Take every memoised promise out (close). */
  drain(): Promise<V>[] {
    const all = [...this.#memo.values()];
    this.#memo.clear();
    return all;
  }
}
