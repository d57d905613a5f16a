// `npx tsx bench/trace-summary.ts /tmp/trace-PID.jsonl…`: for each file written by trace-marks.ts,
// the median microseconds from each step of a request to the next (the first fifth left out as
// warm-up), for requests that reached vLLM and answered their client.
import { readFileSync } from 'node:fs';
import type { TraceMarks } from './trace-marks.js';

const steps = ['arrived', 'bodyRead', 'upstreamCreated', 'upstreamHeadersSent', 'upstreamAnswered', 'upstreamFirstData', 'clientFirstWrite'] as const;

function median(values: number[]): number | null {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  return sorted.length === 0 ? null : (sorted[Math.floor(sorted.length / 2)] ?? null);
}

for (const file of process.argv.slice(2)) {
  const all = readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as TraceMarks)
    .filter((marks) => marks.upstreamCreated !== undefined && marks.clientFirstWrite !== undefined);
  const measured = all.slice(Math.floor(all.length / 5));
  const parts: string[] = [];
  for (let index = 1; index < steps.length; index += 1) {
    const from = steps[index - 1]!;
    const to = steps[index]!;
    const value = median(measured.map((marks) => (marks[to] ?? Number.NaN) - (marks[from] ?? Number.NaN)));
    parts.push(`${from} → ${to} ${value === null ? '—' : value}`);
  }
  console.log(`${file} (${measured.length} requests), median µs: ${parts.join(' | ')}`);
}
