// The in-process caches on the request path hold at most their limit, forgetting the oldest first.
import { describe, expect, it } from 'vitest';
import { BoundedMap } from '../../src/platform/bounded-map.js';

describe('BoundedMap', () => {
  it('forgets the oldest entry once the limit is reached', () => {
    const map = new BoundedMap<string, number>(3);
    for (const [index, key] of ['a', 'b', 'c', 'd', 'e'].entries()) map.set(key, index);
    expect(map.size).toBe(3);
    expect([...map.keys()]).toEqual(['c', 'd', 'e']);
  });

  it('replaces the value of a key it holds without forgetting another', () => {
    const map = new BoundedMap<string, number>(2);
    map.set('a', 1).set('b', 2).set('a', 3);
    expect([...map.entries()]).toEqual([
      ['a', 3],
      ['b', 2],
    ]);
  });

  it('counts a key deleted and set again as the newest', () => {
    const map = new BoundedMap<string, number>(2);
    map.set('a', 1).set('b', 2);
    map.delete('a');
    map.set('a', 1);
    map.set('c', 3);
    expect([...map.keys()]).toEqual(['a', 'c']);
  });
});
