// Where the servers come from: several URLs in VLLM_BASE_URL, or UPSTREAMS_FILE (YAML or JSON). A
// bad file stops the start with a message naming the problem; a changed file applies without a
// restart (watched, or app.gateway.reloadUpstreams() as SIGHUP does), and a bad rewrite is ignored.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/sim/index.js';
import { upstreamRequestFor } from '../helpers/relay-fixtures.js';
import { createTestApp } from '../helpers/test-app.js';
import {
  MODEL_A,
  MODEL_B,
  adminUpstreams,
  configDirectory,
  routingEnvironment,
  sendChat,
  servedBy,
  startCluster,
  waitUntil,
  type Cluster,
  type ConfigDirectory,
  type UpstreamsFileBody,
} from '../helpers/upstream-fixtures.js';
import { adminCredentials, login, randomIp } from '../helpers/auth-client.js';
import { newCaller } from '../helpers/relay-fixtures.js';

/** The file watcher polls every second: a change applies within this long of the write. */
const RELOAD_DEADLINE_MS = 2500;

describe('an invalid UPSTREAMS_FILE stops the start', () => {
  let directory: ConfigDirectory;

  beforeAll(() => {
    directory = configDirectory();
  });

  afterAll(() => {
    directory.remove();
  });

  const good = { name: 'a1', url: 'http://127.0.0.1:9' };
  const cases: Array<{ label: string; fileName: string; content: UpstreamsFileBody | string | Record<string, unknown>; message: RegExp }> = [
    { label: 'YAML that does not parse', fileName: 'broken.yaml', content: 'upstreams:\n  - name: a1\n    url: [http://127.0.0.1:9\n', message: /not valid YAML/ },
    { label: 'JSON that does not parse', fileName: 'broken.json', content: '{"upstreams": [{"name": "a1", ', message: /not valid JSON/ },
    { label: 'a server without url', fileName: 'no-url.yaml', content: { upstreams: [{ name: 'a1' }] }, message: /url/ },
    { label: 'a server without url (JSON)', fileName: 'no-url.json', content: { upstreams: [{ name: 'a1', api_key: 'k' }] }, message: /url/ },
    { label: 'two servers with one name', fileName: 'duplicate.yaml', content: { upstreams: [good, { name: 'a1', url: 'http://127.0.0.1:10' }] }, message: /a1.*twice/ },
    { label: 'a URL that is not http(s)', fileName: 'bad-url.yaml', content: { upstreams: [{ name: 'a1', url: 'ftp://127.0.0.1:9' }] }, message: /url/ },
    { label: 'no servers at all', fileName: 'empty.yaml', content: { upstreams: [] }, message: /upstreams/ },
    { label: 'a misspelt field', fileName: 'typo.yaml', content: { upstreams: [{ ...good, max_concurency: 4 }] }, message: /max_concurency/ },
  ];

  it.each(cases)('$label', async ({ fileName, content, message }) => {
    const file = directory.write(fileName, content as UpstreamsFileBody | string);
    const building = createTestApp({ backend: 'embedded', environment: { ...routingEnvironment, UPSTREAMS_FILE: file } });
    await expect(building).rejects.toThrow(/UPSTREAMS_FILE/);
    await expect(building).rejects.toThrow(message);
  });

  it('a file that does not exist', async () => {
    const building = createTestApp({ backend: 'embedded', environment: { ...routingEnvironment, UPSTREAMS_FILE: `${directory.path}/missing.yaml` } });
    await expect(building).rejects.toThrow(/UPSTREAMS_FILE.*missing\.yaml/);
  });
});

describe('several URLs in VLLM_BASE_URL', () => {
  const sims: Simulator[] = [];

  afterAll(async () => {
    await Promise.all(sims.map((sim) => sim.close()));
  });

  it('routes to each of them, named vllm-1, vllm-2 in the admin view', async () => {
    for (let index = 0; index < 2; index += 1) sims.push(await startSimulator({ interTokenMs: 1, models: [{ id: MODEL_A, maxModelLen: 8192 }] }));
    const testApp = await createTestApp({ backend: 'embedded', environment: { ...routingEnvironment, VLLM_BASE_URL: sims.map((sim) => sim.url).join(',') } });
    try {
      const url = await testApp.app.listen({ port: 0, host: '127.0.0.1' });
      const adminToken = (await login(testApp.app, { ...adminCredentials, remoteAddress: randomIp() })).access_token;
      const view = await adminUpstreams({ app: testApp.app, adminToken });
      expect(view.data.map((row) => [row.name, row.url])).toEqual([
        ['vllm-1', sims[0]!.url],
        ['vllm-2', sims[1]!.url],
      ]);
      const caller = await newCaller(testApp.app);
      const named = { 'vllm-1': sims[0]!, 'vllm-2': sims[1]! };
      const served = new Set<string>();
      for (let index = 0; index < 20 && served.size < 2; index += 1) {
        const reply = await sendChat({ url, caller });
        expect(reply.status, reply.text).toBe(200);
        served.add(servedBy(named, reply.requestId));
      }
      expect(served).toEqual(new Set(['vllm-1', 'vllm-2']));
    } finally {
      await testApp.close();
    }
  });
});

describe('a changed UPSTREAMS_FILE applies without a restart', () => {
  let cluster: Cluster;
  let urls: Record<string, string>;

  beforeAll(async () => {
    cluster = await startCluster({
      simulators: {
        s1: { interTokenMs: 1, models: [{ id: MODEL_A, maxModelLen: 8192 }] },
        s2: { interTokenMs: 1, models: [{ id: MODEL_A, maxModelLen: 8192 }] },
        s3: { interTokenMs: 1, models: [{ id: MODEL_B, maxModelLen: 8192 }] },
      },
      file: (simulatorUrls) => ({
        upstreams: [
          { name: 's1', url: simulatorUrls.s1! },
          { name: 's3', url: simulatorUrls.s3! },
        ],
        aliases: { fast: MODEL_A },
      }),
      captureLogs: true,
    });
    urls = Object.fromEntries(Object.entries(cluster.sims).map(([name, sim]) => [name, sim.url]));
  });

  afterAll(async () => {
    await cluster?.close();
  });

  const rewrite = (content: UpstreamsFileBody | string): void => {
    cluster.directory.write('upstreams.yaml', content);
  };

  const names = async (): Promise<string[]> => (await adminUpstreams(cluster)).data.map((row) => row.name);

  /** Sends A requests until every expected server took one; fails if another did, or one never does. */
  async function expectServedOnlyBy(expected: string[]): Promise<void> {
    const served = new Set<string>();
    for (let index = 0; index < 24 && served.size < expected.length; index += 1) {
      const reply = await sendChat(cluster);
      expect(reply.status, reply.text).toBe(200);
      served.add(servedBy(cluster.sims, reply.requestId));
    }
    for (let index = 0; index < 6; index += 1) {
      const reply = await sendChat(cluster);
      expect(reply.status, reply.text).toBe(200);
      served.add(servedBy(cluster.sims, reply.requestId));
    }
    expect([...served].sort()).toEqual([...expected].sort());
  }

  it('picks up a server added to the file, then drops one removed from it', async () => {
    await expectServedOnlyBy(['s1']);

    rewrite({ upstreams: [{ name: 's1', url: urls.s1! }, { name: 's2', url: urls.s2! }, { name: 's3', url: urls.s3! }], aliases: { fast: MODEL_A } });
    await waitUntil(names, (current) => current.includes('s2'), { what: 's2 added', timeoutMs: RELOAD_DEADLINE_MS });
    await expectServedOnlyBy(['s1', 's2']);

    rewrite({ upstreams: [{ name: 's2', url: urls.s2! }, { name: 's3', url: urls.s3! }], aliases: { fast: MODEL_A } });
    await waitUntil(names, (current) => !current.includes('s1'), { what: 's1 removed', timeoutMs: RELOAD_DEADLINE_MS });
    await expectServedOnlyBy(['s2']);
  });

  it('applies a changed alias', async () => {
    const before = await sendChat(cluster, { model: 'fast' });
    expect(before.status, before.text).toBe(200);
    expect(servedBy(cluster.sims, before.requestId)).not.toBe('s3');

    rewrite({ upstreams: [{ name: 's2', url: urls.s2! }, { name: 's3', url: urls.s3! }], aliases: { fast: MODEL_B } });
    await waitUntil(async () => (await adminUpstreams(cluster)).aliases, (aliases) => aliases.fast === MODEL_B, { what: 'the alias changed', timeoutMs: RELOAD_DEADLINE_MS });
    const after = await sendChat(cluster, { model: 'fast' });
    expect(after.status, after.text).toBe(200);
    expect(servedBy(cluster.sims, after.requestId)).toBe('s3');
    expect(upstreamRequestFor(cluster.sims.s3!, after.requestId).body.model).toBe(MODEL_B);
  });

  it('ignores an invalid rewrite and keeps the running configuration', async () => {
    const valid = await adminUpstreams(cluster);
    for (const [index, content] of ['upstreams:\n  - name: s2\n    url: [oops\n', { upstreams: [{ name: 's2' }] }].entries()) {
      const logged = cluster.testApp.logs.filter((line) => line.includes('not reloaded')).length;
      rewrite(content as UpstreamsFileBody | string);
      await waitUntil(() => Promise.resolve(cluster.testApp.logs.filter((line) => line.includes('not reloaded')).length), (count) => count > logged, {
        what: `the watcher saw invalid rewrite ${index}`,
        timeoutMs: RELOAD_DEADLINE_MS,
      });
      expect(cluster.app.gateway.reloadUpstreams()).toBe(false);
      const view = await adminUpstreams(cluster);
      expect(view.data.map((row) => row.name)).toEqual(valid.data.map((row) => row.name));
      expect(view.aliases).toEqual(valid.aliases);
      const reply = await sendChat(cluster, { model: 'fast' });
      expect(reply.status, reply.text).toBe(200);
      expect(servedBy(cluster.sims, reply.requestId)).toBe('s3');
    }
  });

  it('re-reads the file at once on app.gateway.reloadUpstreams() (what SIGHUP calls)', async () => {
    rewrite({ upstreams: [{ name: 's1', url: urls.s1! }, { name: 's3', url: urls.s3! }], aliases: { fast: MODEL_A, quick: MODEL_A } });
    expect(cluster.app.gateway.reloadUpstreams()).toBe(true);
    const view = await adminUpstreams(cluster);
    expect(view.data.map((row) => row.name)).toEqual(['s1', 's3']);
    expect(view.aliases).toEqual({ fast: MODEL_A, quick: MODEL_A });
    const reply = await sendChat(cluster, { model: 'quick' });
    expect(reply.status, reply.text).toBe(200);
    expect(servedBy(cluster.sims, reply.requestId)).toBe('s1');
  });
});
