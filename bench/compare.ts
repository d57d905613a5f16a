// `npm run bench:compare -- [--mode throughput|one-client|streams] [--rounds N] [--streams N] VARIANT…`
// Measures builds of the gateway against each other in one run, interleaved: each variant gets the
// same load in turn, round after round, the order reversed every other round, after a warm-up round.
// On this noisy VM a change is only worth claiming when it shows this way, in two pairs of builds.
//
// VARIANT is `proxy` (the minimal undici proxy), `NAME` (this checkout's build, dist/src/main.js),
// or `NAME=ENTRY` (another build's main.js, e.g. a `git archive` of an older commit built elsewhere),
// optionally followed by `+VAR=value` settings for that variant's process:
//   npm run bench:compare -- proxy before=/tmp/old/dist/src/main.js after
//   npm run bench:compare -- --mode streams --streams 300 after after+LOG_LEVEL=warn
// Modes: throughput (64 clients, closed loop: CPU per request and requests/s, and what the simulator,
// the load generator, Redis and PostgreSQL spent per request beside it), one-client (one
// request at a time, 2 ms apart or --gap MS, 0 for back to back: latency p50/p90/p99), streams (N streams of 100 tokens at 20 ms
// started over 1 s: first token, gap p50/p99, CPU per relayed event), one-stream (5 such streams
// one after another per round, as the suite's single-stream figures).
import { chatBody, closedLoop, percentile, target, timedRequest, timedStream, type Target } from './load.js';
import { cpuMilliseconds, createBenchCredentials, serviceCpuMilliseconds, startGateway, startMinimalProxy, startSimulator, type Started } from './processes.js';

type Mode = 'throughput' | 'one-client' | 'streams' | 'one-stream';

interface Variant {
  name: string;
  proxy: boolean;
  entry: string | undefined;
  environment: Record<string, string>;
}

interface Measured {
  variant: Variant;
  target: Target;
  process: Started;
  cpuMilliseconds: number;
  /** Throughput mode: the CPU of everything else on the machine during the variant's rounds. */
  machine: MachineCpu;
  units: number;
  ratesPerSecond: number[];
  latencies: number[];
  firstTokens: number[];
  gaps: number[];
}

/** Milliseconds of CPU, per process that shares the machine with the variant measured. */
interface MachineCpu {
  simulator: number;
  loadGenerator: number;
  redis: number;
  postgres: number;
}

/** A variant's counts before any measured round (and again after the warm-up). */
function noneMeasured(): Omit<Measured, 'variant' | 'target' | 'process'> {
  return { cpuMilliseconds: 0, machine: { simulator: 0, loadGenerator: 0, redis: 0, postgres: 0 }, units: 0, ratesPerSecond: [], latencies: [], firstTokens: [], gaps: [] };
}

/** The machine's other processes' CPU so far: the simulator, this load generator, Redis, PostgreSQL. */
function machineCpu(simulatorPid: number): MachineCpu {
  const own = process.cpuUsage();
  return {
    simulator: cpuMilliseconds(simulatorPid),
    loadGenerator: (own.user + own.system) / 1000,
    redis: serviceCpuMilliseconds('redis-server'),
    postgres: serviceCpuMilliseconds('postgres'),
  };
}

const chat = chatBody();
const streamBody = chatBody({ max_tokens: 100, ignore_eos: true, stream: true });

function parseArguments(argv: string[]): { mode: Mode; rounds: number; streams: number; gapMs: number; variants: Variant[] } {
  let mode: Mode = 'throughput';
  let rounds = 8;
  let streams = 300;
  let gapMs = 2;
  const variants: Variant[] = [];
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index] ?? '';
    const value = () => {
      index += 1;
      return argv[index] ?? '';
    };
    if (argument === '--mode') {
      const chosen = value();
      if (chosen !== 'throughput' && chosen !== 'one-client' && chosen !== 'streams' && chosen !== 'one-stream') throw new Error('--mode is throughput, one-client, streams or one-stream');
      mode = chosen;
    } else if (argument === '--rounds') rounds = Number(value());
    else if (argument === '--streams') streams = Number(value());
    else if (argument === '--gap') gapMs = Number(value());
    else variants.push(parseVariant(argument));
  }
  if (variants.length === 0) throw new Error('name at least one variant: proxy, NAME, or NAME=path/to/main.js');
  if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(streams) || streams < 1) throw new Error('--rounds and --streams take positive whole numbers');
  if (!Number.isFinite(gapMs) || gapMs < 0) throw new Error('--gap takes milliseconds, 0 or more');
  return { mode, rounds, streams, gapMs, variants };
}

function parseVariant(specification: string): Variant {
  const [head = '', ...settings] = specification.split('+');
  const environment = Object.fromEntries(
    settings.map((setting) => {
      const equals = setting.indexOf('=');
      if (equals < 1) throw new Error(`a setting is VAR=value, not "${setting}"`);
      return [setting.slice(0, equals), setting.slice(equals + 1)];
    }),
  );
  const equals = head.indexOf('=');
  const name = equals === -1 ? head : head.slice(0, equals);
  const entry = equals === -1 ? undefined : head.slice(equals + 1);
  return { name: specification, proxy: name === 'proxy', entry, environment };
}

async function start(variant: Variant, upstreamUrl: string): Promise<{ target: Target; process: Started }> {
  if (variant.proxy) {
    const proxy = await startMinimalProxy({ port: 0, upstreamUrl, environment: variant.environment });
    return { target: target(variant.name, proxy.url, {}, proxy.pid), process: proxy };
  }
  const gateway = await startGateway({
    port: 0,
    vllmUrl: upstreamUrl,
    databaseUrl: process.env.BENCH_DATABASE_URL ?? null,
    redisUrl: process.env.BENCH_REDIS_URL ?? null,
    environment: variant.environment,
    ...(variant.entry === undefined ? {} : { entry: variant.entry }),
  });
  const { apiKey } = await createBenchCredentials(gateway.url);
  return { target: target(variant.name, gateway.url, { authorization: `Bearer ${apiKey}` }, gateway.pid), process: gateway };
}

/** One round of the chosen load against one variant, its CPU time read from /proc around it. */
async function measureRound(measured: Measured, mode: Mode, streams: number, gapMs: number, simulatorPid: number): Promise<void> {
  const before = cpuMilliseconds(measured.process.pid);
  if (mode === 'throughput') {
    const machineBefore = machineCpu(simulatorPid);
    let requests = 0;
    const perSecond = await closedLoop({
      concurrency: 64,
      durationMs: 3000,
      work: async () => {
        await timedRequest(measured.target, '/v1/chat/completions', chat);
        requests += 1;
      },
    });
    measured.ratesPerSecond.push(perSecond);
    measured.units += requests;
    // The gateway writes its usage rows a second later (USAGE_FLUSH_INTERVAL_MS): wait for them, so
    // PostgreSQL's work is counted in the round that caused it.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const machineAfter = machineCpu(simulatorPid);
    for (const key of Object.keys(machineAfter) as Array<keyof MachineCpu>) measured.machine[key] += machineAfter[key] - machineBefore[key];
  } else if (mode === 'one-client') {
    const deadline = performance.now() + 3000;
    while (performance.now() < deadline) {
      measured.latencies.push(await timedRequest(measured.target, '/v1/chat/completions', chat));
      measured.units += 1;
      // Back to back (--gap 0): the next request goes as soon as the answer is read.
      if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
    }
  } else if (mode === 'one-stream') {
    // As the suite's "1 stream (30 in turn)": one stream at a time, the next as soon as one ends.
    for (let index = 0; index < 5; index += 1) {
      const result = await timedStream(measured.target, '/v1/chat/completions', streamBody);
      measured.firstTokens.push(result.timeToFirstEventMs);
      measured.gaps.push(...result.gapsMs);
      measured.units += result.events.length;
    }
  } else {
    const results = await Promise.all(
      Array.from({ length: streams }, async (_, index) => {
        await new Promise((resolve) => setTimeout(resolve, (index * 1000) / streams));
        return timedStream(measured.target, '/v1/chat/completions', streamBody);
      }),
    );
    for (const result of results) {
      measured.firstTokens.push(result.timeToFirstEventMs);
      measured.gaps.push(...result.gapsMs);
      measured.units += result.events.length;
    }
  }
  measured.cpuMilliseconds += cpuMilliseconds(measured.process.pid) - before;
}

function report(measured: Measured, mode: Mode): string {
  const name = measured.variant.name.padEnd(32);
  /** Microseconds per request (or per relayed event) of so many milliseconds of CPU. */
  const per = (milliseconds: number) => ((milliseconds * 1000) / Math.max(1, measured.units)).toFixed(1);
  const cpu = per(measured.cpuMilliseconds);
  if (mode === 'throughput') {
    const rate = measured.ratesPerSecond.reduce((sum, value) => sum + value, 0) / measured.ratesPerSecond.length;
    const { simulator, loadGenerator, redis, postgres } = measured.machine;
    return (
      `${name} ${cpu} µs CPU per request   ${rate.toFixed(0)} requests/s   rounds: ${measured.ratesPerSecond.map((value) => value.toFixed(0)).join(' ')}\n` +
      `${''.padEnd(32)} and per request: simulator ${per(simulator)} µs, load generator ${per(loadGenerator)}, Redis ${per(redis)}, PostgreSQL ${per(postgres)}`
    );
  }
  if (mode === 'one-client') {
    const [p50, p90, p99] = [50, 90, 99].map((p) => percentile(measured.latencies, p).toFixed(3));
    return `${name} latency p50 ${p50} ms   p90 ${p90}   p99 ${p99}   (${measured.latencies.length} requests)`;
  }
  const firstToken = percentile(measured.firstTokens, 50).toFixed(2);
  const [gap50, gap99] = [50, 99].map((p) => percentile(measured.gaps, p).toFixed(2));
  return `${name} first token p50 ${firstToken} ms   gap p50 ${gap50}   p99 ${gap99}   ${cpu} µs CPU per relayed event`;
}

async function main(): Promise<void> {
  const { mode, rounds, streams, gapMs, variants } = parseArguments(process.argv.slice(2));
  const streaming = mode === 'streams' || mode === 'one-stream';
  const simulator = await startSimulator({ port: 0, ttftMs: streaming ? 20 : 0, itlMs: streaming ? 20 : 0 });
  const all: Measured[] = [];
  try {
    for (const variant of variants) {
      const { target: measuredTarget, process: started } = await start(variant, simulator.url);
      all.push({ variant, target: measuredTarget, process: started, ...noneMeasured() });
    }
    // Warm-up: whichever process is measured first would otherwise pay for its JIT.
    for (const measured of all) {
      await measureRound(measured, mode, Math.min(streams, 50), gapMs, simulator.pid);
      Object.assign(measured, noneMeasured());
    }
    for (let round = 0; round < rounds; round += 1) {
      const order = round % 2 === 0 ? all : [...all].reverse();
      for (const measured of order) await measureRound(measured, mode, streams, gapMs, simulator.pid);
    }
    console.log(`${mode}, ${rounds} rounds interleaved${mode === 'streams' ? `, ${streams} streams started over 1 s` : mode === 'one-stream' ? ', 5 streams one after another' : ''}:`);
    for (const measured of all) console.log(report(measured, mode));
  } finally {
    for (const measured of all) {
      await measured.target.pool.close();
      await measured.process.stop();
    }
    await simulator.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
