// A Prometheus histogram and the number format of Python's prometheus_client, which is what
// vLLM's /metrics is written with (`1.0`, not `1`).

export class Histogram {
  private readonly bucketCounts: number[];
  private sum = 0;
  private count = 0;

  constructor(private readonly upperBounds: readonly number[]) {
    this.bucketCounts = upperBounds.map(() => 0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    const bucket = this.upperBounds.findIndex((bound) => value <= bound);
    if (bucket !== -1) this.bucketCounts[bucket] = (this.bucketCounts[bucket] ?? 0) + 1;
  }

  /** `_bucket` (cumulative, ending with +Inf), `_count` and `_sum` lines; `labels` is `a="b",c="d"`. */
  render(name: string, labels: string): string {
    let lines = '';
    let cumulative = 0;
    this.upperBounds.forEach((bound, bucket) => {
      cumulative += this.bucketCounts[bucket] ?? 0;
      lines += `${name}_bucket{${labels},le="${formatNumber(bound)}"} ${formatNumber(cumulative)}\n`;
    });
    lines += `${name}_bucket{${labels},le="+Inf"} ${formatNumber(this.count)}\n`;
    lines += `${name}_count{${labels}} ${formatNumber(this.count)}\n`;
    lines += `${name}_sum{${labels}} ${formatNumber(this.sum)}\n`;
    return lines;
  }
}

export function formatNumber(value: number): string {
  return Number.isInteger(value) ? value.toFixed(1) : String(value);
}
