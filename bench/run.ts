// `npm run bench [-- SCENARIO…] [-- --quick]`: starts the simulator, the built gateway and a
// minimal proxy, runs the scenarios, and writes bench/results/latest.json and latest.md.
// Scenarios: non-streaming, streaming, memory, chat, auth. PostgreSQL and Redis are used when
// BENCH_DATABASE_URL / BENCH_REDIS_URL are set (else the embedded defaults).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { target, type Target } from './load.js';
import { createBenchCredentials, startGateway, startMinimalProxy, startSimulator, type Started } from './processes.js';
import { authHeavy, concurrencyAndMemory, nonStreamingOverhead, streamingOverhead, type Row, type StreamStarts } from './scenarios.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const known = ['non-streaming', 'streaming', 'memory', 'chat', 'auth'];
const chosen = argv.filter((argument) => !argument.startsWith('--'));
for (const name of chosen) if (!known.includes(name)) throw new Error(`Unknown scenario ${name}; choose from ${known.join(', ')}`);
const wanted = (name: string) => chosen.length === 0 || chosen.includes(name);

/** Waits until the gateway holds no stream (the last scenario's are over), so scenarios do not overlap. */
async function untilQuiet(gatewayUrl: string): Promise<void> {
  for (let attempt = 0; attempt < 120; attempt += 1) {
    const metrics = await (await fetch(`${gatewayUrl}/metrics`)).text();
    if (/^chat_active_streams 0$/m.test(metrics)) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  await new Promise((resolve) => setTimeout(resolve, 1000));
}

async function main(): Promise<void> {
  const started: Started[] = [];
  const rows: Row[] = [];
  try {
    const fastSimulator = await startSimulator({ port: 0, ttftMs: 0, itlMs: 0 });
    started.push(fastSimulator);
    const pacedSimulator = await startSimulator({ port: 0, ttftMs: 20, itlMs: 20 });
    started.push(pacedSimulator);
    const databaseUrl = process.env.BENCH_DATABASE_URL ?? null;
    const redisUrl = process.env.BENCH_REDIS_URL ?? null;
    const fastGateway = await startGateway({ port: 0, vllmUrl: fastSimulator.url, databaseUrl, redisUrl });
    started.push(fastGateway);
    const pacedGateway = await startGateway({ port: 0, vllmUrl: pacedSimulator.url, databaseUrl, redisUrl });
    started.push(pacedGateway);
    const proxy = await startMinimalProxy({ port: 0, upstreamUrl: fastSimulator.url });
    started.push(proxy);
    const pacedProxy = await startMinimalProxy({ port: 0, upstreamUrl: pacedSimulator.url });
    started.push(pacedProxy);

    const credentials = createBenchCredentials;
    const fastCredentials = await credentials(fastGateway.url);
    const pacedCredentials = await credentials(pacedGateway.url);
    const targets = {
      fastDirect: target('simulator', fastSimulator.url),
      fastGateway: target('gateway', fastGateway.url, { authorization: `Bearer ${fastCredentials.apiKey}` }, fastGateway.pid),
      proxy: target('minimal proxy', proxy.url, {}, proxy.pid),
      pacedProxy: target('minimal proxy (paced)', pacedProxy.url, {}, pacedProxy.pid),
      pacedDirect: target('simulator (paced)', pacedSimulator.url),
      pacedGateway: target('gateway (paced)', pacedGateway.url, { authorization: `Bearer ${pacedCredentials.apiKey}` }, pacedGateway.pid),
      pacedChat: target('gateway /api/chat', pacedGateway.url, { authorization: `Bearer ${pacedCredentials.accessToken}` }),
    } satisfies Record<string, Target>;

    if (wanted('non-streaming')) rows.push(...(await nonStreamingOverhead({ direct: targets.fastDirect, gateway: targets.fastGateway, proxy: targets.proxy, quick, redisUrl })));
    if (wanted('streaming')) {
      const runs: Array<{ concurrency: number; starts: StreamStarts }> = quick
        ? [
            { concurrency: 1, starts: { kind: 'oneAfterAnother', count: 5 } },
            { concurrency: 20, starts: { kind: 'spread', overMs: 200 } },
            { concurrency: 20, starts: { kind: 'together' } },
          ]
        : [
            { concurrency: 1, starts: { kind: 'oneAfterAnother', count: 30 } },
            { concurrency: 100, starts: { kind: 'spread', overMs: 1000 } },
            { concurrency: 1000, starts: { kind: 'spread', overMs: 2000 } },
            { concurrency: 100, starts: { kind: 'together' } },
            { concurrency: 1000, starts: { kind: 'together' } },
          ];
      // Streams long enough (100 tokens, 2 s) that, spread over 2 s, all 1,000 are open together.
      rows.push(...(await streamingOverhead({ direct: targets.pacedDirect, gateway: targets.pacedGateway, proxy: targets.pacedProxy, runs, tokens: quick ? 10 : 100 })));
      await untilQuiet(pacedGateway.url);
    }
    if (wanted('memory')) rows.push(...(await concurrencyAndMemory({ gateway: targets.pacedGateway, gatewayPid: pacedGateway.pid, streams: quick ? 200 : 2000 })));
    if (wanted('chat')) {
      const runs: Array<{ concurrency: number; starts: StreamStarts }> = quick
        ? [
            { concurrency: 1, starts: { kind: 'oneAfterAnother', count: 3 } },
            { concurrency: 10, starts: { kind: 'spread', overMs: 200 } },
          ]
        : [
            { concurrency: 1, starts: { kind: 'oneAfterAnother', count: 20 } },
            { concurrency: 100, starts: { kind: 'spread', overMs: 1000 } },
          ];
      rows.push(...(await streamingOverhead({ direct: targets.pacedDirect, gateway: targets.pacedChat, path: '/api/chat', label: '/api/chat with persistence', runs, tokens: quick ? 10 : 30 })));
    }
    if (wanted('auth')) {
      const tokens: string[] = [];
      for (let index = 0; index < (quick ? 20 : 200); index += 1) tokens.push((await credentials(fastGateway.url)).accessToken);
      rows.push(...(await authHeavy({ gateway: target('gateway', fastGateway.url), accessTokens: tokens })));
    }
  } finally {
    await Promise.all(started.map((process) => process.stop()));
  }

  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const result = { date: new Date().toISOString(), machine, quick, rows };
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  const name = quick ? 'quick' : 'latest';
  writeFileSync(new URL(`./results/${name}.json`, import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
  const table = [
    `Run ${result.date} on ${machine}${quick ? ' (--quick: small samples)' : ''}; simulator, gateway, proxy and load generator share the machine.`,
    '',
    '| scenario | metric | direct | gateway | result | budget |',
    '|---|---|---|---|---|---|',
    ...rows.map((row) => `| ${row.scenario} | ${row.metric} | ${row.direct ?? '—'} | ${row.gateway ?? '—'} | **${row.result}** ${row.unit} | ${row.budget} |`),
  ].join('\n');
  writeFileSync(new URL(`./results/${name}.md`, import.meta.url), `${table}\n`);
  console.log(table);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exit(1);
});
