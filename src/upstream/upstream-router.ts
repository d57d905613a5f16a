// Chooses the vLLM server for each request: among the healthy servers that serve the model, the
// least loaded (fewest requests in flight from this gateway per unit of weight, then vLLM's own
// waiting queue), optionally the same one for a conversation (prefix-cache affinity) unless it is
// busier. Each server's concurrency limit is enforced with a short bounded queue: when every
// replica is full, the caller gets 503 with Retry-After instead of waiting without end.
import { createHash } from 'node:crypto';
import { GatewayError } from '../errors.js';
import type { UpstreamDefinition, UpstreamsConfig } from './upstreams-config.js';
import { UpstreamState, type BreakerSettings } from './upstream-state.js';

export interface RouterSettings extends BreakerSettings {
  queueSize: number;
  queueTimeoutMs: number;
  /** How much busier than the least loaded server an affinity target may be and still be chosen. */
  affinitySlack: number;
}

export interface UpstreamLease {
  upstream: UpstreamDefinition;
  /** Ends the request's claim on the server and teaches its breaker. Idempotent. */
  release(outcome: 'success' | 'failure' | 'neutral'): void;
}

interface Waiter {
  model: string | null;
  exclude: ReadonlySet<string>;
  resolve: (lease: UpstreamLease) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export function createUpstreamRouter(settings: RouterSettings, initial: UpstreamsConfig) {
  let upstreams: UpstreamState[] = [];
  let aliases: Record<string, string> = {};
  const waiters: Waiter[] = [];

  /**
   * Installs a (new) configuration. A server with the same name and URL keeps its state object —
   * in-flight count, breaker, error history — so requests running across a reload still count.
   */
  function configure(config: UpstreamsConfig): void {
    const previous = new Map(upstreams.map((upstream) => [`${upstream.name} ${upstream.definition.url}`, upstream]));
    upstreams = config.upstreams.map((definition) => {
      const kept = previous.get(`${definition.name} ${definition.url}`);
      if (kept === undefined) return new UpstreamState(definition, settings);
      kept.definition = definition;
      return kept;
    });
    aliases = { ...config.aliases };
  }
  configure(initial);

  /**
   * Servers for a model: those that serve it (minus the ones already tried). Only when no server
   * claims the model at all does any server get it — vLLM then answers 404 itself.
   */
  function candidates(model: string | null, exclude: ReadonlySet<string>): UpstreamState[] {
    const untried = (list: UpstreamState[]) => list.filter((upstream) => !exclude.has(upstream.name));
    if (model === null) return untried(upstreams);
    const serving = upstreams.filter((upstream) => upstream.serves(model) !== false);
    return untried(serving.length > 0 ? serving : upstreams);
  }

  function load(upstream: UpstreamState): number {
    return upstream.inFlight / upstream.definition.weight;
  }

  function choose(model: string | null, affinityKey: string | null, exclude: ReadonlySet<string>): UpstreamState | 'all_full' | 'none_available' {
    const now = Date.now();
    const all = candidates(model, exclude);
    if (all.length === 0) return 'none_available';
    // Ejected servers get no traffic while another can take it. When every one is ejected, they are
    // all tried anyway ("panic mode"): refusing outright would fail every request for certain.
    const healthy = all.filter((upstream) => upstream.available(now));
    const available = healthy.length > 0 ? healthy : all;
    const open = available.filter((upstream) => !upstream.full);
    if (open.length === 0) return 'all_full';
    const ranked = [...open].sort((a, b) => load(a) - load(b) || (a.waiting ?? 0) - (b.waiting ?? 0) || Math.random() - 0.5);
    const best = ranked[0] as UpstreamState;
    if (affinityKey !== null) {
      // Rendezvous hashing: a conversation keeps its server while the set of servers is stable.
      const preferred = [...open].sort((a, b) => affinityScore(b.name, affinityKey) - affinityScore(a.name, affinityKey))[0];
      if (preferred !== undefined && load(preferred) <= load(best) + settings.affinitySlack) return preferred;
    }
    return best;
  }

  function lease(upstream: UpstreamState): UpstreamLease {
    upstream.begin();
    let released = false;
    return {
      upstream: upstream.definition,
      release(outcome) {
        if (released) return;
        released = true;
        upstream.end(outcome, Date.now());
        wakeWaiters();
      },
    };
  }

  function wakeWaiters(): void {
    for (let index = 0; index < waiters.length; ) {
      const waiter = waiters[index] as Waiter;
      const chosen = choose(waiter.model, null, waiter.exclude);
      if (typeof chosen === 'string') {
        index += 1;
        continue;
      }
      waiters.splice(index, 1);
      clearTimeout(waiter.timer);
      waiter.resolve(lease(chosen));
    }
  }

  const busy = () => new GatewayError('service_unavailable', 'Every vLLM server for this model is at its limit; retry shortly', { headers: { 'retry-after': '1' } });

  return {
    configure,

    /** The model a request names, after aliases. */
    resolveModel(model: string | null): string | null {
      return model === null ? null : (aliases[model] ?? model);
    },

    aliases: () => ({ ...aliases }),

    /** Claims a server for one request, waiting briefly in a bounded queue when all are full. */
    async acquire(input: {
      model: string | null;
      affinityKey: string | null;
      /** Servers not to use (those already tried)… */
      exclude?: ReadonlySet<string>;
      /** …unless none of the others is up to take the request. */
      triedAgainIfAlone?: boolean;
      signal?: AbortSignal;
    }): Promise<UpstreamLease> {
      let exclude = input.exclude ?? new Set<string>();
      if (input.triedAgainIfAlone === true) {
        const now = Date.now();
        if (!candidates(input.model, exclude).some((upstream) => upstream.available(now))) exclude = new Set<string>();
      }
      const chosen = choose(input.model, input.affinityKey, exclude);
      if (chosen === 'none_available') throw new GatewayError('upstream_unavailable', 'No healthy vLLM server can take this request');
      if (chosen !== 'all_full') return lease(chosen);
      if (waiters.length >= settings.queueSize) throw busy();
      return new Promise<UpstreamLease>((resolve, reject) => {
        const leave = (error: Error) => {
          const index = waiters.indexOf(waiter);
          if (index !== -1) waiters.splice(index, 1);
          clearTimeout(waiter.timer);
          input.signal?.removeEventListener('abort', onAbort);
          reject(error);
        };
        // A client that leaves while queued gives its place up at once.
        const onAbort = () => leave(input.signal?.reason instanceof Error ? input.signal.reason : new Error('aborted'));
        const waiter: Waiter = {
          model: input.model,
          exclude,
          resolve: (granted) => {
            input.signal?.removeEventListener('abort', onAbort);
            resolve(granted);
          },
          reject,
          timer: setTimeout(() => leave(busy()), settings.queueTimeoutMs),
        };
        waiters.push(waiter);
        input.signal?.addEventListener('abort', onAbort, { once: true });
      });
    },

    /** A server for a side request (token counting) without claiming it. */
    peek(model: string | null): UpstreamDefinition | null {
      const chosen = choose(model, null, new Set());
      return typeof chosen === 'string' ? (upstreams[0]?.definition ?? null) : chosen.definition;
    },

    upstreams: (): readonly UpstreamState[] => upstreams,
  };
}

export type UpstreamRouter = ReturnType<typeof createUpstreamRouter>;

function affinityScore(upstreamName: string, key: string): number {
  return createHash('sha1').update(`${upstreamName}\u0000${key}`).digest().readUInt32BE(0);
}
