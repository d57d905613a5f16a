// `npm run bench:profile [-- non-streaming|streaming|chat]`: runs one kind of load against the gateway
// alone, with the gateway under `node --cpu-prof`, then prints where its CPU time went
// (bench/profile-summary.ts). The profile is kept in bench/results/profiles/.
import { readdirSync } from 'node:fs';
import { chatBody, closedLoop, target, timedRequest, timedStream } from './load.js';
import { createBenchCredentials, startGateway, startSimulator, type Started } from './processes.js';
import { summarizeProfile } from './profile-summary.js';

const kind = process.argv[2] ?? 'non-streaming';
if (kind !== 'non-streaming' && kind !== 'streaming' && kind !== 'chat') throw new Error('choose non-streaming, streaming or chat');
const profileDirectory = new URL('./results/profiles/', import.meta.url).pathname;
const chat = chatBody();

async function main(): Promise<void> {
  const started: Started[] = [];
  const before = new Set(listProfiles());
  try {
    const streaming = kind !== 'non-streaming';
    const simulator = await startSimulator({ port: 0, ttftMs: streaming ? 20 : 0, itlMs: streaming ? 20 : 0 });
    started.push(simulator);
    const gateway = await startGateway({
      port: 0,
      vllmUrl: simulator.url,
      databaseUrl: process.env.BENCH_DATABASE_URL ?? null,
      redisUrl: process.env.BENCH_REDIS_URL ?? null,
      profileDirectory,
    });
    started.push(gateway);
    const { apiKey, accessToken } = await createBenchCredentials(gateway.url);
    const client = target('gateway', gateway.url, { authorization: `Bearer ${kind === 'chat' ? accessToken : apiKey}` });
    if (kind === 'chat') {
      // /api/chat with its turns stored: five times 100 streams of 30 tokens started over 1 s.
      for (let round = 0; round < 5; round += 1) {
        await Promise.all(
          Array.from({ length: 100 }, async (_, index) => {
            await new Promise((resolve) => setTimeout(resolve, index * 10));
            return timedStream(client, '/api/chat', { ...chat, stream: true, max_tokens: 30, ignore_eos: true });
          }),
        );
      }
    } else if (streaming) {
      // 1,000 streams of 100 tokens (2 s each) started over 2 s: up to 1,000 open at once.
      await Promise.all(
        Array.from({ length: 1000 }, async (_, index) => {
          await new Promise((resolve) => setTimeout(resolve, index * 2));
          return timedStream(client, '/v1/chat/completions', { ...chat, stream: true, max_tokens: 100, ignore_eos: true });
        }),
      );
    } else {
      const perSecond = await closedLoop({ concurrency: 32, durationMs: 15_000, work: () => timedRequest(client, '/v1/chat/completions', chat) });
      console.log(`gateway alone: ${Math.round(perSecond)} requests/s`);
    }
    await client.pool.close();
  } finally {
    await Promise.all(started.map((process) => process.stop()));
  }
  const written = listProfiles().filter((name) => !before.has(name));
  for (const name of written) summarizeProfile(`${profileDirectory}${name}`, 40);
}

function listProfiles(): string[] {
  try {
    return readdirSync(profileDirectory).filter((name) => name.endsWith('.cpuprofile'));
  } catch {
    return [];
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exit(1);
});
