// The router's bounded queue, driven directly: a waiter whose client left gives its place up.
import { describe, expect, it } from 'vitest';
import { createUpstreamRouter } from '../../src/upstream/upstream-router.js';
import { upstreamsFromUrls } from '../../src/upstream/upstreams-config.js';

function fullRouter() {
  const config = upstreamsFromUrls(['http://127.0.0.1:9'], null);
  const only = config.upstreams[0];
  if (only === undefined) throw new Error('no upstream');
  only.maxConcurrency = 1;
  return createUpstreamRouter({ failureThreshold: 3, cooldownMs: 1000, queueSize: 1, queueTimeoutMs: 5000, affinitySlack: 2 }, config);
}

describe('upstream router queue', () => {
  it('frees the place of a queued request whose client left, so the next one can wait', async () => {
    const router = fullRouter();
    const running = await router.acquire({ model: null, affinityKey: null });
    const controller = new AbortController();
    const abandoned = router.acquire({ model: null, affinityKey: null, signal: controller.signal });
    // The queue (size 1) is full: another request is refused at once.
    await expect(router.acquire({ model: null, affinityKey: null })).rejects.toMatchObject({ code: 'service_unavailable' });
    controller.abort(new Error('client left'));
    await expect(abandoned).rejects.toThrow('client left');
    // Its place is free again: this one waits, and gets the slot when the running request ends.
    const next = router.acquire({ model: null, affinityKey: null });
    running.release('success');
    const granted = await next;
    expect(granted.upstream.name).toBe('vllm-1');
    expect(router.upstreams()[0]?.inFlight).toBe(1);
    granted.release('success');
    expect(router.upstreams()[0]?.inFlight).toBe(0);
  });
});
