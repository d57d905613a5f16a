// The time field of every log line, as pino's isoTime writes it (`,"time":"2026-12-08T01:02:03.456Z"`),
// without building a Date and formatting all of it for each line: the part up to the second is
// formatted once per second and the milliseconds appended. An access line is written per request.

let cachedSecond = Number.NaN;
/** The ISO text up to and including the second's dot, e.g. `2026-12-08T01:02:03.`. */
let cachedPrefix = '';

export function isoTimeField(): string {
  const now = Date.now();
  const milliseconds = ((now % 1000) + 1000) % 1000;
  const second = now - milliseconds;
  if (second !== cachedSecond) {
    cachedSecond = second;
    const iso = new Date(second).toISOString();
    cachedPrefix = iso.slice(0, iso.length - 4);
  }
  return `,"time":"${cachedPrefix}${milliseconds < 10 ? '00' : milliseconds < 100 ? '0' : ''}${milliseconds}Z"`;
}
