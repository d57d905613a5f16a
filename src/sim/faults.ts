// Fault switches that let tests make the simulator misbehave on purpose: set server-wide, by the
// `x-sim-fault` header, or by a top-level `sim_fault` body field (which the gateway passes through).

/**
 * Keys use snake_case because the same object travels as JSON in a header or a request body.
 * Chunk counts: for a stream, `data:` events already sent (role chunks included); for a
 * non-streaming request, tokens generated so far. A count larger than the response applies just
 * before the end (before `data: [DONE]`, or before the JSON body).
 */
export interface SimulatorFault {
  /** Destroy the socket at once: no status line, no body. */
  refuse?: boolean;
  /** Wait this long before sending the response headers. */
  delay_ms?: number;
  /** Answer this HTTP status with the error envelope instead of serving the request. */
  status?: number;
  /** Send N chunks, then destroy the socket (no `[DONE]`). */
  cut_after_chunks?: number;
  /** Send N chunks, then vLLM's mid-stream `data: {"error": …}` and `data: [DONE]` (non-streaming: a 500). */
  error_after_chunks?: number;
  /** Send N chunks, then one event of invalid JSON, then carry on to `[DONE]` (non-streaming: a truncated body). */
  malformed_after_chunks?: number;
}

export const FAULT_HEADER = 'x-sim-fault';
export const FAULT_BODY_FIELD = 'sim_fault';

export type FaultParseResult = { ok: true; fault: SimulatorFault | null } | { ok: false; message: string };

const COUNT_KEYS = ['delay_ms', 'cut_after_chunks', 'error_after_chunks', 'malformed_after_chunks'] as const;

export function parseFault(value: unknown, source: string): FaultParseResult {
  if (value === undefined || value === null) return { ok: true, fault: null };
  if (typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, message: `${source} must be a JSON object` };
  }
  const record = value as Record<string, unknown>;
  const fault: SimulatorFault = {};
  if (record.refuse !== undefined) {
    if (typeof record.refuse !== 'boolean') return { ok: false, message: `${source}.refuse must be a boolean` };
    fault.refuse = record.refuse;
  }
  if (record.status !== undefined) {
    const status = record.status;
    if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) {
      return { ok: false, message: `${source}.status must be an HTTP status code` };
    }
    fault.status = status;
  }
  for (const key of COUNT_KEYS) {
    const count = record[key];
    if (count === undefined) continue;
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 0) {
      return { ok: false, message: `${source}.${key} must be a non-negative integer` };
    }
    fault[key] = count;
  }
  return { ok: true, fault };
}

export function parseFaultHeader(header: string | string[] | undefined): FaultParseResult {
  if (header === undefined) return { ok: true, fault: null };
  const text = Array.isArray(header) ? header.join(',') : header;
  try {
    return parseFault(JSON.parse(text) as unknown, `${FAULT_HEADER} header`);
  } catch {
    return { ok: false, message: `${FAULT_HEADER} header is not valid JSON` };
  }
}

/** Server-wide first, then the header, then the body: later keys win. */
export function mergeFaults(faults: ReadonlyArray<SimulatorFault | null>): SimulatorFault {
  const merged: SimulatorFault = {};
  for (const fault of faults) {
    if (fault !== null) Object.assign(merged, fault);
  }
  return merged;
}

export type DueFault = 'cut' | 'error' | 'malformed';

/**
 * Which count-triggered fault is due after `progress` chunks (or tokens), in the order they win:
 * cut, then error, then malformed. `atEnd`: a count beyond the response applies just before its end.
 */
export function dueFault(fault: SimulatorFault, progress: number, atEnd: boolean): DueFault | null {
  const due = (count: number | undefined): boolean => count !== undefined && (atEnd || progress >= count);
  if (due(fault.cut_after_chunks)) return 'cut';
  if (due(fault.error_after_chunks)) return 'error';
  if (due(fault.malformed_after_chunks)) return 'malformed';
  return null;
}
