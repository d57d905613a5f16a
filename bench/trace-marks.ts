// Loaded into a gateway or proxy process (`NODE_OPTIONS="--import=tsx --import=./bench/trace-marks.ts"`,
// e.g. as a `bench:compare` variant's setting), it marks when each request reaches each step, with
// the machine's monotonic clock, and writes one line per request to /tmp/trace-PID.jsonl when the
// process exits (the gateway and the minimal proxy both exit through process.exit on SIGTERM).
// `npx tsx bench/trace-summary.ts FILE…` prints the median time between the steps.
// For one request at a time (one client, streams one after another): a request's later steps are
// matched to the latest request that arrived. Diagnostics only: it patches Node's ServerResponse and
// undici's Request, which no production process should.
import diagnostics from 'node:diagnostics_channel';
import { appendFileSync } from 'node:fs';
import { ServerResponse } from 'node:http';

export type TraceMarks = Partial<Record<'arrived' | 'bodyRead' | 'upstreamCreated' | 'upstreamHeadersSent' | 'upstreamAnswered' | 'upstreamFirstData' | 'clientFirstWrite', number>>;

const microsecondsNow = (): number => Number(process.hrtime.bigint() / 1000n);
const records: TraceMarks[] = [];
let current: TraceMarks | null = null;
/** Which request an upstream call belongs to. */
const marksOfUpstream = new WeakMap<object, TraceMarks>();

function mark(marks: TraceMarks | null | undefined, step: keyof TraceMarks): void {
  if (marks !== null && marks !== undefined && marks[step] === undefined) marks[step] = microsecondsNow();
}

diagnostics.subscribe('http.server.request.start', (message) => {
  const { request } = message as { request: { url?: string; once(event: 'end', listener: () => void): void } };
  if (request.url?.startsWith('/health') === true) return;
  const marks: TraceMarks = { arrived: microsecondsNow() };
  records.push(marks);
  current = marks;
  request.once('end', () => mark(marks, 'bodyRead'));
});

let patchedRequest = false;
diagnostics.subscribe('undici:request:create', (message) => {
  const { request } = message as { request: object };
  if (current === null || current.upstreamCreated !== undefined) return;
  mark(current, 'upstreamCreated');
  marksOfUpstream.set(request, current);
  if (patchedRequest) return;
  patchedRequest = true;
  // undici reports no channel per body chunk: its Request's onData is wrapped once.
  const prototype = Object.getPrototypeOf(request) as object;
  const onData = Reflect.get(prototype, 'onData') as (this: object, chunk: Buffer) => unknown;
  Reflect.set(prototype, 'onData', function (this: object, chunk: Buffer) {
    mark(marksOfUpstream.get(this), 'upstreamFirstData');
    return onData.call(this, chunk);
  });
});
diagnostics.subscribe('undici:client:sendHeaders', (message) => mark(marksOfUpstream.get((message as { request: object }).request), 'upstreamHeadersSent'));
diagnostics.subscribe('undici:request:headers', (message) => mark(marksOfUpstream.get((message as { request: object }).request), 'upstreamAnswered'));

for (const method of ['write', 'end'] as const) {
  const original = Reflect.get(ServerResponse.prototype, method) as (this: ServerResponse, ...args: unknown[]) => unknown;
  Reflect.set(ServerResponse.prototype, method, function (this: ServerResponse, ...args: unknown[]) {
    if (this.req.url?.startsWith('/health') !== true) mark(current, 'clientFirstWrite');
    return original.apply(this, args);
  });
}

process.on('exit', () => {
  if (records.length > 0) appendFileSync(`/tmp/trace-${process.pid}.jsonl`, `${records.map((marks) => JSON.stringify(marks)).join('\n')}\n`);
});
