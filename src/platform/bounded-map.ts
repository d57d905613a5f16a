// A Map that holds at most `limit` entries and forgets the oldest one first. For the in-process
// caches on the request path (verified tokens, judged credentials, key owners, cache salts), whose
// keys come from callers: memory stays bounded whatever they send.

export class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly limit: number) {
    super();
  }

  override set(key: K, value: V): this {
    if (!this.has(key) && this.size >= this.limit) {
      // Maps iterate in insertion order: the first key is the oldest.
      const oldest = this.keys().next();
      if (oldest.done !== true) this.delete(oldest.value);
    }
    return super.set(key, value);
  }
}
