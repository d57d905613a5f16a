// The router's choice for a retry after a reset: another server while one is up to take it, else
// the one already tried (a kept-alive connection it was closing), never an ejected one instead.
import { describe, expect, it } from 'vitest';
import { createUpstreamRouter } from '../../src/upstream/upstream-router.js';
import { upstreamsFromUrls } from '../../src/upstream/upstreams-config.js';

function twoServers() {
  const config = upstreamsFromUrls(['http://127.0.0.1:9', 'http://127.0.0.1:10'], null);
  return createUpstreamRouter({ failureThreshold: 3, cooldownMs: 60_000, queueSize: 1, queueTimeoutMs: 5000, affinitySlack: 2 }, config);
}

async function eject(router: ReturnType<typeof twoServers>, name: string): Promise<void> {
  for (let failure = 0; failure < 3; failure += 1) {
    const lease = await router.acquire({ model: null, affinityKey: null, exclude: new Set(router.upstreams().map((each) => each.definition.name).filter((each) => each !== name)) });
    expect(lease.upstream.name).toBe(name);
    lease.release('failure');
  }
}

describe('upstream router, a retry after a reset', () => {
  it('goes to another server while one is up', async () => {
    const router = twoServers();
    const lease = await router.acquire({ model: null, affinityKey: null, exclude: new Set(['vllm-1']), triedAgainIfAlone: true });
    expect(lease.upstream.name).toBe('vllm-2');
  });

  it('goes back to the server it tried when the only other one is ejected', async () => {
    const router = twoServers();
    await eject(router, 'vllm-2');
    const retry = await router.acquire({ model: null, affinityKey: null, exclude: new Set(['vllm-1']), triedAgainIfAlone: true });
    expect(retry.upstream.name).toBe('vllm-1');
    // A retry of any other failure still goes to a server not tried, ejected or not (panic mode).
    const other = await router.acquire({ model: null, affinityKey: null, exclude: new Set(['vllm-1']) });
    expect(other.upstream.name).toBe('vllm-2');
  });
});
