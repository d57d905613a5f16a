// The load generator: timed requests and streams against one target, over a keep-alive pool.
import { Pool } from 'undici';

export interface Target {
  name: string;
  url: string;
  headers: Record<string, string>;
  pool: Pool;
  /** The process answering, when the benchmark started it: its CPU time is read from /proc. */
  pid: number | null;
}

/** Idle connections are closed after 4 s, before the simulator closes them at 5 s as vLLM does (the gateway does the same). */
export function target(name: string, url: string, headers: Record<string, string> = {}, pid: number | null = null): Target {
  return { name, url, headers, pool: new Pool(url, { connections: 2048, pipelining: 1, keepAliveTimeout: 4000 }), pid };
}

/** The request every scenario sends (a short chat completion), with fields added or replaced. */
export function chatBody(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: 'sim-llama-3-8b', messages: [{ role: 'user', content: 'Say something short.' }], max_tokens: 16, seed: 7, ...extra };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
}

/** One non-streaming request; resolves with its latency in milliseconds. */
export async function timedRequest(target: Target, path: string, body: unknown): Promise<number> {
  const started = performance.now();
  const response = await target.pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json', ...target.headers }, body: JSON.stringify(body) });
  await response.body.dump();
  if (response.statusCode !== 200) throw new Error(`${target.name} answered ${response.statusCode}`);
  return performance.now() - started;
}

export interface StreamTiming {
  timeToFirstEventMs: number;
  gapsMs: number[];
  events: string[];
}

/** One SSE stream: the time to its first data event, the gaps between events, and the events. */
export async function timedStream(target: Target, path: string, body: unknown): Promise<StreamTiming> {
  const started = performance.now();
  const response = await target.pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json', ...target.headers }, body: JSON.stringify(body) });
  if (response.statusCode !== 200) throw new Error(`${target.name} answered ${response.statusCode}: ${await response.body.text()}`);
  let buffer = '';
  let last = 0;
  let first = Number.NaN;
  const gaps: number[] = [];
  const events: string[] = [];
  for await (const chunk of response.body) {
    const now = performance.now();
    buffer += (chunk as Buffer).toString('utf8');
    let end = buffer.indexOf('\n\n');
    while (end !== -1) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      end = buffer.indexOf('\n\n');
      if (!event.startsWith('data: ')) continue;
      if (Number.isNaN(first)) first = now - started;
      else gaps.push(now - last);
      last = now;
      events.push(event);
    }
  }
  return { timeToFirstEventMs: first, gapsMs: gaps, events };
}

/** Runs `work` on `concurrency` workers until `durationMs` passes; returns completions per second. */
export async function closedLoop(input: { concurrency: number; durationMs: number; work: () => Promise<unknown> }): Promise<number> {
  const deadline = performance.now() + input.durationMs;
  let completed = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: input.concurrency }, async () => {
      while (performance.now() < deadline) {
        await input.work();
        completed += 1;
      }
    }),
  );
  return completed / ((performance.now() - started) / 1000);
}

/** Fires requests at a fixed rate (open loop: a slow answer does not slow the arrivals). */
export async function openLoop(input: { ratePerSecond: number; durationMs: number; work: () => Promise<number> }): Promise<number[]> {
  const latencies: number[] = [];
  const pending: Array<Promise<void>> = [];
  const interval = 1000 / input.ratePerSecond;
  const started = performance.now();
  for (let index = 0; performance.now() - started < input.durationMs; index += 1) {
    const due = started + index * interval;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    pending.push(input.work().then((latency) => void latencies.push(latency)));
  }
  await Promise.all(pending);
  return latencies;
}
