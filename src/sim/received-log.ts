// Remembers the last requests the simulator received, so a test can assert exactly what the
// gateway sent upstream (path, headers, body).
import type { IncomingHttpHeaders } from 'node:http';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body; undefined when there was no body or it was not JSON. */
  body: unknown;
  rawBody: string;
  receivedAt: number;
}

export class ReceivedLog {
  private entries: ReceivedRequest[] = [];
  private totalCount = 0;

  constructor(private readonly limit: number) {}

  get total(): number {
    return this.totalCount;
  }

  add(entry: ReceivedRequest): void {
    this.totalCount++;
    if (this.limit <= 0) return;
    this.entries.push(entry);
    // Trim in batches so a busy benchmark does not shift the array on every request.
    if (this.entries.length >= this.limit * 2) this.entries = this.entries.slice(-this.limit);
  }

  snapshot(): ReceivedRequest[] {
    return this.entries.slice(-this.limit);
  }

  clear(): void {
    this.entries = [];
  }
}
