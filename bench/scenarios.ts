// The benchmark scenarios. Each measures the gateway against the simulator reached directly, in
// the same run and interleaved, so the figures are differences and ratios that hold on a noisy machine.
import { chatBody, closedLoop, openLoop, percentile, timedRequest, timedStream, type StreamTiming, type Target } from './load.js';
import { cpuMilliseconds, residentBytes } from './processes.js';
import { RedisScriptMeter } from './redis-meter.js';

export interface Row {
  scenario: string;
  metric: string;
  direct: number | null;
  gateway: number | null;
  /** The figure the budget is about: an added latency, a ratio, a count. */
  result: number;
  unit: string;
  budget: string;
}

const round = (value: number, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;

export async function nonStreamingOverhead(input: { direct: Target; gateway: Target; proxy: Target; quick: boolean; redisUrl: string | null }): Promise<Row[]> {
  const { direct, gateway, proxy, quick } = input;
  const samples = quick ? 200 : 3000;
  for (let index = 0; index < 100; index += 1) {
    await timedRequest(direct, '/v1/chat/completions', chatBody());
    await timedRequest(proxy, '/v1/chat/completions', chatBody());
    await timedRequest(gateway, '/v1/chat/completions', chatBody());
  }
  const directTimes: number[] = [];
  const proxyTimes: number[] = [];
  const gatewayTimes: number[] = [];
  for (let index = 0; index < samples; index += 1) {
    directTimes.push(await timedRequest(direct, '/v1/chat/completions', chatBody()));
    proxyTimes.push(await timedRequest(proxy, '/v1/chat/completions', chatBody()));
    gatewayTimes.push(await timedRequest(gateway, '/v1/chat/completions', chatBody()));
  }
  const rows: Row[] = [];
  for (const p of [50, 99]) {
    const directValue = percentile(directTimes, p);
    const gatewayValue = percentile(gatewayTimes, p);
    rows.push({ scenario: 'non-streaming, 1 client', metric: `latency p${p}`, direct: round(directValue), gateway: round(gatewayValue), result: round(gatewayValue - directValue), unit: 'ms added', budget: p === 50 ? '≤ 0.5' : '≤ 2' });
  }
  // The floor: what one more HTTP hop costs on this machine, with no work done in it.
  for (const p of [50, 99]) {
    const directValue = percentile(directTimes, p);
    const proxyValue = percentile(proxyTimes, p);
    rows.push({ scenario: 'non-streaming, 1 client', metric: `latency p${p}, minimal undici proxy instead of the gateway`, direct: round(directValue), gateway: round(proxyValue), result: round(proxyValue - directValue), unit: 'ms added by the proxy', budget: '—' });
  }

  const rate = quick ? 100 : 300;
  const durationMs = quick ? 2000 : 10_000;
  const openDirect = await openLoop({ ratePerSecond: rate, durationMs, work: () => timedRequest(direct, '/v1/chat/completions', chatBody()) });
  const openGateway = await openLoop({ ratePerSecond: rate, durationMs, work: () => timedRequest(gateway, '/v1/chat/completions', chatBody()) });
  for (const p of [50, 99]) {
    const directValue = percentile(openDirect, p);
    const gatewayValue = percentile(openGateway, p);
    rows.push({ scenario: `non-streaming, open loop ${rate}/s`, metric: `latency p${p}`, direct: round(directValue), gateway: round(gatewayValue), result: round(gatewayValue - directValue), unit: 'ms added', budget: '—' });
  }

  // Throughput, rounds interleaved so drift on the machine hits all three alike.
  const concurrency = quick ? 16 : 64;
  const roundMs = quick ? 1500 : 5000;
  const totals = { direct: 0, proxy: 0, gateway: 0 };
  // CPU time per request of the proxy and the gateway: what each costs, whatever the machine's load.
  const cpu = { proxy: new CpuMeter(proxy), gateway: new CpuMeter(gateway) };
  // And what the gateway's requests cost Redis, the part every instance shares.
  const redis = new RedisScriptMeter(input.redisUrl);
  const rounds = quick ? 1 : 3;
  for (let roundIndex = 0; roundIndex < rounds; roundIndex += 1) {
    totals.direct += await closedLoop({ concurrency, durationMs: roundMs, work: () => timedRequest(direct, '/v1/chat/completions', chatBody()) });
    totals.proxy += await cpu.proxy.during(() => closedLoop({ concurrency, durationMs: roundMs, work: () => cpu.proxy.counted(timedRequest(proxy, '/v1/chat/completions', chatBody())) }));
    totals.gateway += await redis.during(() =>
      cpu.gateway.during(() => closedLoop({ concurrency, durationMs: roundMs, work: () => cpu.gateway.counted(timedRequest(gateway, '/v1/chat/completions', chatBody())) })),
    );
  }
  const redisEach = redis.microsecondsEach(cpu.gateway.requests);
  await redis.close();
  const throughput = { direct: totals.direct / rounds, proxy: totals.proxy / rounds, gateway: totals.gateway / rounds };
  rows.push({ scenario: `throughput, ${concurrency} clients`, metric: 'requests/s (direct | gateway)', direct: round(throughput.direct, 0), gateway: round(throughput.gateway, 0), result: round(throughput.gateway / throughput.direct), unit: '× direct', budget: '—' });
  rows.push({ scenario: `throughput, ${concurrency} clients`, metric: 'gateway ÷ minimal undici proxy', direct: round(throughput.proxy, 0), gateway: round(throughput.gateway, 0), result: round(throughput.gateway / throughput.proxy), unit: '×', budget: '≥ 0.8' });
  const perRequest = { proxy: cpu.proxy.microsecondsEach(), gateway: cpu.gateway.microsecondsEach() };
  if (perRequest.proxy !== null && perRequest.gateway !== null) {
    rows.push({ scenario: `throughput, ${concurrency} clients`, metric: 'CPU per request, µs (minimal undici proxy | gateway)', direct: round(perRequest.proxy, 0), gateway: round(perRequest.gateway, 0), result: round(perRequest.gateway / perRequest.proxy), unit: '× the proxy', budget: '—' });
  }
  if (redisEach !== null) {
    rows.push({ scenario: `throughput, ${concurrency} clients`, metric: "Redis's time per request in the limits script (INFO commandstats)", direct: null, gateway: round(redisEach, 1), result: round(redisEach, 1), unit: 'µs of Redis', budget: '—' });
  }
  return rows;
}

/**
 * How the streams of one measurement start. `together`: all at the same instant (a burst, the
 * worst case for time to first token). `spread`: evenly over `overMs`, as independent users
 * arrive, so all of them are open together once the last has started. `oneAfterAnother`: one
 * stream at a time, `count` times, for the figures of a single stream.
 */
export type StreamStarts = { kind: 'together' } | { kind: 'spread'; overMs: number } | { kind: 'oneAfterAnother'; count: number };

export async function streamingOverhead(input: {
  direct: Target;
  gateway: Target;
  /** The minimal proxy in front of the same simulator, measured too: the floor on this machine. */
  proxy?: Target;
  path?: string;
  label?: string;
  runs: Array<{ concurrency: number; starts: StreamStarts }>;
  tokens: number;
}): Promise<Row[]> {
  const rows: Row[] = [];
  const path = input.path ?? '/v1/chat/completions';
  const body = chatBody({ stream: true, max_tokens: input.tokens, ignore_eos: true });
  for (const { concurrency, starts } of input.runs) {
    const run = async (targetOfRun: Target, runPath: string): Promise<StreamTiming[]> => {
      if (starts.kind === 'oneAfterAnother') {
        const timings: StreamTiming[] = [];
        for (let index = 0; index < starts.count; index += 1) timings.push(await timedStream(targetOfRun, runPath, body));
        return timings;
      }
      const delayOf = (index: number) => (starts.kind === 'spread' ? (index * starts.overMs) / concurrency : 0);
      return Promise.all(
        Array.from({ length: concurrency }, async (_, index) => {
          const delay = delayOf(index);
          if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
          return timedStream(targetOfRun, runPath, body);
        }),
      );
    };
    const directRuns = await run(input.direct, '/v1/chat/completions');
    const proxyCpu = input.proxy === undefined ? null : new CpuMeter(input.proxy);
    const gatewayCpu = new CpuMeter(input.gateway);
    const proxyRuns = input.proxy === undefined || proxyCpu === null ? null : await proxyCpu.during(() => run(input.proxy!, '/v1/chat/completions'));
    const gatewayRuns = await gatewayCpu.during(() => run(input.gateway, path));
    const eventsOf = (runs: StreamTiming[]) => runs.reduce((total, stream) => total + stream.events.length, 0);
    const chunksOf = (stream: StreamTiming) => stream.events.filter((event) => event.includes('chat.completion.chunk')).length;
    const expectedChunks = directRuns[0] === undefined ? 0 : chunksOf(directRuns[0]);
    const lost = gatewayRuns.filter((stream) => chunksOf(stream) !== expectedChunks).length;
    const shape = starts.kind === 'oneAfterAnother' ? `1 stream (${starts.count} in turn)` : starts.kind === 'spread' ? `${concurrency} streams (started over ${starts.overMs / 1000} s)` : `${concurrency} streams (started at once)`;
    const scenario = `${input.label ?? 'streaming'}, ${shape}`;
    const budgeted = starts.kind !== 'together';
    const ttft = (runs: StreamTiming[], p: number) => percentile(runs.map((stream) => stream.timeToFirstEventMs), p);
    const gaps = (runs: StreamTiming[], p: number) => percentile(runs.flatMap((stream) => stream.gapsMs), p);
    for (const p of [50, 99]) {
      rows.push({ scenario, metric: `time to first token p${p}`, direct: round(ttft(directRuns, p)), gateway: round(ttft(gatewayRuns, p)), result: round(ttft(gatewayRuns, p) - ttft(directRuns, p)), unit: 'ms added', budget: p === 50 && budgeted ? '≤ 1' : '—' });
    }
    for (const p of [50, 99]) {
      const gapBudget = concurrency >= 1000 ? '≤ 10' : '≤ 1';
      rows.push({ scenario, metric: `inter-chunk gap p${p}`, direct: round(gaps(directRuns, p)), gateway: round(gaps(gatewayRuns, p)), result: round(gaps(gatewayRuns, p) - gaps(directRuns, p)), unit: 'ms added', budget: p === 99 && budgeted ? gapBudget : '—' });
    }
    if (proxyRuns !== null) {
      rows.push({ scenario, metric: 'time to first token p50, minimal undici proxy instead of the gateway', direct: round(ttft(directRuns, 50)), gateway: round(ttft(proxyRuns, 50)), result: round(ttft(proxyRuns, 50) - ttft(directRuns, 50)), unit: 'ms added by the proxy', budget: '—' });
      rows.push({ scenario, metric: 'inter-chunk gap p99, minimal undici proxy instead of the gateway', direct: round(gaps(directRuns, 99)), gateway: round(gaps(proxyRuns, 99)), result: round(gaps(proxyRuns, 99) - gaps(directRuns, 99)), unit: 'ms added by the proxy', budget: '—' });
    }
    if (proxyRuns !== null && proxyCpu !== null) {
      proxyCpu.add(eventsOf(proxyRuns));
      gatewayCpu.add(eventsOf(gatewayRuns));
      const perEvent = { proxy: proxyCpu.microsecondsEach(), gateway: gatewayCpu.microsecondsEach() };
      if (perEvent.proxy !== null && perEvent.gateway !== null) {
        rows.push({ scenario, metric: 'CPU per relayed event, µs (minimal undici proxy | gateway)', direct: round(perEvent.proxy, 1), gateway: round(perEvent.gateway, 1), result: round(perEvent.gateway / perEvent.proxy), unit: '× the proxy', budget: '—' });
      }
    }
    rows.push({ scenario, metric: `streams with a lost or extra chunk (of ${gatewayRuns.length}, ${expectedChunks} chunks each)`, direct: 0, gateway: lost, result: lost, unit: 'streams', budget: '0' });
  }
  return rows;
}

/** CPU time a target's process spent during measured work, per unit of work (a request or an event). */
class CpuMeter {
  private milliseconds = 0;
  private units = 0;

  constructor(private readonly measured: Target) {}

  async during<T>(work: () => Promise<T>): Promise<T> {
    if (this.measured.pid === null) return work();
    const before = cpuMilliseconds(this.measured.pid);
    const result = await work();
    this.milliseconds += cpuMilliseconds(this.measured.pid) - before;
    return result;
  }

  /** Units of work counted so far. */
  get requests(): number {
    return this.units;
  }

  async counted<T>(unit: Promise<T>, count = 1): Promise<T> {
    const result = await unit;
    this.units += count;
    return result;
  }

  add(count: number): void {
    this.units += count;
  }

  /** Null when there is nothing to go by: no process, no work, or too few 10 ms ticks to be within 2 %. */
  microsecondsEach(): number | null {
    return this.measured.pid === null || this.units === 0 || this.milliseconds < 500 ? null : (this.milliseconds * 1000) / this.units;
  }
}

export async function concurrencyAndMemory(input: { gateway: Target; gatewayPid: number; streams: number }): Promise<Row[]> {
  const before = residentBytes(input.gatewayPid);
  // Long, slow streams (the simulator paces tokens) held open together.
  const body = chatBody({ stream: true, max_tokens: 60, ignore_eos: true });
  let maxResident = before;
  const sampler = setInterval(() => {
    maxResident = Math.max(maxResident, residentBytes(input.gatewayPid));
  }, 100);
  const results = await Promise.allSettled(Array.from({ length: input.streams }, () => timedStream(input.gateway, '/v1/chat/completions', body)));
  clearInterval(sampler);
  const completed = results.filter((result) => result.status === 'fulfilled' && result.value.events.at(-1) === 'data: [DONE]').length;
  // Why the others did not complete, said once per reason (the table has room for the count only).
  const failures = new Map<string, number>();
  for (const result of results) {
    const reason = result.status === 'rejected' ? String(result.reason instanceof Error ? result.reason.message : result.reason).slice(0, 200) : result.value.events.at(-1) === 'data: [DONE]' ? null : `ended with ${result.value.events.at(-2)?.slice(0, 200)}`;
    if (reason !== null) failures.set(reason, (failures.get(reason) ?? 0) + 1);
  }
  for (const [reason, count] of failures) console.error(`${count} of ${input.streams} streams did not complete: ${reason}`);
  const perThousand = ((maxResident - before) / input.streams) * 1000;
  return [
    { scenario: `${input.streams} concurrent streams`, metric: 'completed without stall or error', direct: null, gateway: completed, result: completed, unit: 'streams', budget: '≥ 2000 held' },
    { scenario: `${input.streams} concurrent streams`, metric: 'resident memory added per 1,000 streams', direct: null, gateway: round(maxResident / 2 ** 20, 1), result: round(perThousand / 2 ** 20, 1), unit: 'MB', budget: '≤ 64' },
  ];
}

export async function authHeavy(input: { gateway: Target; accessTokens: string[] }): Promise<Row[]> {
  const cold: number[] = [];
  const warm: number[] = [];
  for (const token of input.accessTokens) {
    const headers = { authorization: `Bearer ${token}` };
    const started = performance.now();
    const first = await input.gateway.pool.request({ method: 'GET', path: '/api/auth/me', headers });
    await first.body.dump();
    cold.push(performance.now() - started);
    const again = performance.now();
    const second = await input.gateway.pool.request({ method: 'GET', path: '/api/auth/me', headers });
    await second.body.dump();
    warm.push(performance.now() - again);
  }
  return [50, 99].map((p) => ({
    scenario: `access-token requests (${input.accessTokens.length} tokens)`,
    metric: `GET /api/auth/me p${p} (cold | warm token cache)`,
    direct: round(percentile(cold, p)),
    gateway: round(percentile(warm, p)),
    result: round(percentile(cold, p) - percentile(warm, p)),
    unit: 'ms saved by the cache',
    budget: '—',
  }));
}
