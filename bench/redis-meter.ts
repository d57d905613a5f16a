// Redis's own time in the limits script while a piece of load runs: the time INFO commandstats
// gives EVALSHA, summed over the rounds it measures. Redis is the one part every gateway instance
// shares, so this per request bounds a whole cluster (bench/redis-cost.ts measures the script alone).
import { Redis } from 'ioredis';

/** Redis's total time in EVALSHA so far, in microseconds (INFO commandstats). */
export async function evalshaMicroseconds(client: Redis): Promise<number> {
  const text = await client.info('commandstats');
  return Number(/cmdstat_evalsha:calls=\d+,usec=(\d+)/.exec(text)?.[1] ?? 0);
}

export class RedisScriptMeter {
  private microseconds = 0;
  private readonly client: Redis | null;

  constructor(url: string | null) {
    this.client = url === null ? null : new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  }

  async during<T>(work: () => Promise<T>): Promise<T> {
    if (this.client === null) return work();
    const before = await evalshaMicroseconds(this.client);
    const result = await work();
    this.microseconds += (await evalshaMicroseconds(this.client)) - before;
    return result;
  }

  /** Null without Redis, or without requests to divide by. */
  microsecondsEach(requests: number): number | null {
    return this.client === null || requests === 0 ? null : this.microseconds / requests;
  }

  async close(): Promise<void> {
    await this.client?.quit().catch(() => undefined);
  }
}
