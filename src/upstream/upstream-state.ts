// One vLLM server as the router sees it: its configuration, its load (requests in flight from this
// gateway, and vLLM's own waiting queue as last scraped), the models it serves, its health from
// active checks, and a circuit breaker fed by passive observation of real requests.
import type { UpstreamDefinition } from './upstreams-config.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerSettings {
  /** Consecutive failures (connection errors, 5xx) that open the breaker. */
  failureThreshold: number;
  /** How long an open breaker keeps traffic away before one probe request is let through. */
  cooldownMs: number;
}

const outcomeWindowMs = 5 * 60_000;

export class UpstreamState {
  inFlight = 0;
  /** vLLM's `vllm:num_requests_waiting`, from its /metrics; null until scraped. */
  waiting: number | null = null;
  /** Models from its /v1/models (LoRA adapters included); null until discovered. */
  discoveredModels: string[] | null = null;
  /** The last active /health check; servers start healthy so traffic flows before the first check. */
  healthy = true;
  breaker: BreakerState = 'closed';
  private consecutiveFailures = 0;
  private openedAt = 0;
  private probeInFlight = false;
  private readonly outcomes: Array<{ at: number; failed: boolean }> = [];

  constructor(
    /** Replaced on a reload that keeps the server (same name and URL). */
    public definition: UpstreamDefinition,
    private readonly settings: BreakerSettings,
  ) {}

  get name(): string {
    return this.definition.name;
  }

  /** A configured list wins; otherwise what the server says it serves. */
  serves(model: string): boolean | null {
    const models = this.definition.models ?? this.discoveredModels;
    return models === null ? null : models.includes(model);
  }

  get full(): boolean {
    return this.definition.maxConcurrency !== null && this.inFlight >= this.definition.maxConcurrency;
  }

  /** Whether a request may go here now; an open breaker past its cool-down lets one probe through. */
  available(now: number): boolean {
    if (!this.healthy) return false;
    if (this.breaker === 'closed') return true;
    if (this.breaker === 'open' && now - this.openedAt >= this.settings.cooldownMs) {
      this.breaker = 'half_open';
      this.probeInFlight = false;
    }
    return this.breaker === 'half_open' && !this.probeInFlight;
  }

  /** Called when a request is sent here. */
  begin(): void {
    this.inFlight += 1;
    if (this.breaker === 'half_open') this.probeInFlight = true;
  }

  /** Called when a request sent here is over: `neutral` outcomes (the client's own error, the client leaving) teach nothing. */
  end(outcome: 'success' | 'failure' | 'neutral', now: number): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    if (outcome === 'neutral') {
      if (this.breaker === 'half_open') this.probeInFlight = false;
      return;
    }
    this.outcomes.push({ at: now, failed: outcome === 'failure' });
    while ((this.outcomes[0]?.at ?? now) < now - outcomeWindowMs) this.outcomes.shift();
    if (outcome === 'success') {
      this.consecutiveFailures = 0;
      this.breaker = 'closed';
      this.probeInFlight = false;
      return;
    }
    this.consecutiveFailures += 1;
    if (this.breaker === 'half_open' || this.consecutiveFailures >= this.settings.failureThreshold) {
      this.breaker = 'open';
      this.openedAt = now;
      this.probeInFlight = false;
    }
  }

  /** Share of failed requests over the last five minutes. */
  errorRate(now: number): number {
    const recent = this.outcomes.filter((outcome) => outcome.at >= now - outcomeWindowMs);
    return recent.length === 0 ? 0 : recent.filter((outcome) => outcome.failed).length / recent.length;
  }
}
