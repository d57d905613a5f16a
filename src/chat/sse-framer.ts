// Cuts a byte stream into whole SSE events (everything up to and including the blank line that
// ends each one), keeping the original bytes. Working on bytes rather than decoded text means an
// event split across TCP packets at any byte, inside a multibyte character included, is rejoined
// exactly, and forwarding an event is a copy of what vLLM sent, not a re-encoding of it.
// (eventsource-parser gives decoded fields only, so it cannot forward original bytes selectively.)

const lineFeed = 0x0a;
const carriageReturn = 0x0d;

export class SseFramer {
  private pending: Buffer = Buffer.alloc(0);

  /** Adds bytes; returns the events completed by them, each with its terminating blank line. */
  push(chunk: Buffer): Buffer[] {
    const buffer = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const events: Buffer[] = [];
    let start = 0;
    for (;;) {
      const end = findEventEnd(buffer, start);
      if (end === -1) break;
      events.push(buffer.subarray(start, end));
      start = end;
    }
    this.pending = start === buffer.length ? Buffer.alloc(0) : Buffer.from(buffer.subarray(start));
    return events;
  }

  /** Bytes of an event that never ended (the upstream stopped in the middle of it). */
  get remainder(): Buffer {
    return this.pending;
  }
}

/** The index just after the first blank line at or after `from` (LF LF, CRLF CRLF or CR CR), or -1. */
function findEventEnd(buffer: Buffer, from: number): number {
  const lf = buffer.indexOf('\n\n', from);
  // Fast path: vLLM ends every event with LF LF and sends no CR.
  const firstCarriageReturn = buffer.indexOf(carriageReturn, from);
  if (firstCarriageReturn === -1 || (lf !== -1 && lf < firstCarriageReturn)) return lf === -1 ? -1 : lf + 2;
  for (let index = firstCarriageReturn; index < buffer.length; index += 1) {
    const byte = buffer[index];
    if (byte !== lineFeed && byte !== carriageReturn) continue;
    const lineEnd = byte === carriageReturn && buffer[index + 1] === lineFeed ? index + 2 : index + 1;
    const next = buffer[lineEnd];
    if (next === lineFeed) return lineEnd + 1;
    if (next === carriageReturn) {
      // A CR as the last byte may be the first half of a CRLF: wait for the next packet to decide.
      if (lineEnd + 1 === buffer.length) return -1;
      return buffer[lineEnd + 1] === lineFeed ? lineEnd + 2 : lineEnd + 1;
    }
    index = lineEnd - 1;
  }
  return -1;
}
