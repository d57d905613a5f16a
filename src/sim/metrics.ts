// vLLM's Prometheus metrics for GET /metrics, kept per base model and written by hand in the
// text format prometheus_client produces (names, labels and bucket bounds as vLLM's).
import { Histogram, formatNumber } from './histogram.js';

export type FinishedReason = 'stop' | 'length' | 'abort' | 'error';
export const FINISHED_REASONS: readonly FinishedReason[] = ['stop', 'length', 'abort', 'error'];

const TIME_TO_FIRST_TOKEN_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
  160.0, 640.0, 2560.0,
];
const INTER_TOKEN_BUCKETS = [
  0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
];
const REQUEST_LATENCY_BUCKETS = [
  0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
  1920.0, 7680.0,
];

interface ModelSeries {
  labels: string;
  running: number;
  waiting: number;
  promptTokens: number;
  generationTokens: number;
  finished: Record<FinishedReason, number>;
  timeToFirstToken: Histogram;
  interTokenLatency: Histogram;
  endToEndLatency: Histogram;
  queueTime: Histogram;
}

type HistogramKey = 'timeToFirstToken' | 'interTokenLatency' | 'endToEndLatency' | 'queueTime';

export class SimulatorMetrics {
  private readonly series = new Map<string, ModelSeries>();
  private readonly createdSeconds = Date.now() / 1000;

  constructor(
    baseModelIds: readonly string[],
    private readonly maxRunning: () => number,
  ) {
    for (const modelId of baseModelIds) this.series.set(modelId, createSeries(modelId));
  }

  adjustRunning(modelId: string, delta: number): void {
    this.get(modelId).running += delta;
  }

  adjustWaiting(modelId: string, delta: number): void {
    this.get(modelId).waiting += delta;
  }

  countPromptTokens(modelId: string, tokens: number): void {
    this.get(modelId).promptTokens += tokens;
  }

  countGenerationTokens(modelId: string, tokens: number): void {
    this.get(modelId).generationTokens += tokens;
  }

  countFinished(modelId: string, reason: FinishedReason): void {
    this.get(modelId).finished[reason]++;
  }

  observe(modelId: string, histogram: HistogramKey, seconds: number): void {
    this.get(modelId)[histogram].observe(seconds);
  }

  render(): string {
    const all = [...this.series.values()];
    let text = '';
    text += family('vllm:num_requests_running', 'gauge', 'Number of requests in model execution batches.');
    for (const series of all) text += `vllm:num_requests_running{${series.labels}} ${formatNumber(series.running)}\n`;
    text += family('vllm:num_requests_waiting', 'gauge', 'Number of requests waiting to be processed.');
    for (const series of all) text += `vllm:num_requests_waiting{${series.labels}} ${formatNumber(series.waiting)}\n`;
    // A stand-in for KV-cache pressure: the share of the running slots in use.
    text += family('vllm:kv_cache_usage_perc', 'gauge', 'KV-cache usage. 1 means 100 percent usage.');
    for (const series of all) {
      text += `vllm:kv_cache_usage_perc{${series.labels}} ${formatNumber(Math.min(1, series.running / this.maxRunning()))}\n`;
    }
    text += this.renderCounter('vllm:prompt_tokens', 'Number of prefill tokens processed.', (series) => [
      [series.labels, series.promptTokens],
    ]);
    text += this.renderCounter('vllm:generation_tokens', 'Number of generation tokens processed.', (series) => [
      [series.labels, series.generationTokens],
    ]);
    text += this.renderCounter('vllm:request_success', 'Count of successfully processed requests.', (series) =>
      FINISHED_REASONS.map((reason) => [`${series.labels},finished_reason="${reason}"`, series.finished[reason]]),
    );
    text += this.renderHistogram('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', 'timeToFirstToken');
    text += this.renderHistogram('vllm:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', 'interTokenLatency');
    text += this.renderHistogram('vllm:e2e_request_latency_seconds', 'Histogram of e2e request latency in seconds.', 'endToEndLatency');
    text += this.renderHistogram('vllm:request_queue_time_seconds', 'Histogram of time spent in WAITING phase for request.', 'queueTime');
    return text;
  }

  private renderCounter(
    name: string,
    help: string,
    samples: (series: ModelSeries) => Array<[labels: string, value: number]>,
  ): string {
    // prometheus_client names counter families `<name>_total` and adds a `<name>_created` sample.
    let text = family(`${name}_total`, 'counter', help);
    const created = formatNumber(this.createdSeconds);
    for (const series of this.series.values()) {
      for (const [labels, value] of samples(series)) {
        text += `${name}_total{${labels}} ${formatNumber(value)}\n`;
        text += `${name}_created{${labels}} ${created}\n`;
      }
    }
    return text;
  }

  private renderHistogram(name: string, help: string, key: HistogramKey): string {
    let text = family(name, 'histogram', help);
    for (const series of this.series.values()) {
      text += series[key].render(name, series.labels);
      text += `${name}_created{${series.labels}} ${formatNumber(this.createdSeconds)}\n`;
    }
    return text;
  }

  private get(modelId: string): ModelSeries {
    let series = this.series.get(modelId);
    if (series === undefined) {
      series = createSeries(modelId);
      this.series.set(modelId, series);
    }
    return series;
  }
}

function family(name: string, type: string, help: string): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
}

function createSeries(modelId: string): ModelSeries {
  const escaped = modelId.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');
  return {
    labels: `engine="0",model_name="${escaped}"`,
    running: 0,
    waiting: 0,
    promptTokens: 0,
    generationTokens: 0,
    finished: { stop: 0, length: 0, abort: 0, error: 0 },
    timeToFirstToken: new Histogram(TIME_TO_FIRST_TOKEN_BUCKETS),
    interTokenLatency: new Histogram(INTER_TOKEN_BUCKETS),
    endToEndLatency: new Histogram(REQUEST_LATENCY_BUCKETS),
    queueTime: new Histogram(REQUEST_LATENCY_BUCKETS),
  };
}
