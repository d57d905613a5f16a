// The simulator's configuration: what `startSimulator` accepts, and its defaults, so the server,
// the CLI and the tests agree on one shape.
import type { SimulatorFault } from './faults.js';

export interface SimulatedModel {
  id: string;
  /** Context window; LoRA adapters usually leave it `null` (their card shows null, the parent's applies). */
  maxModelLen: number | null;
  /** Set for a LoRA adapter: the id of the base model it runs on. */
  parent?: string | null;
  /** `root` on the model card; defaults to the id (base) or `/loras/<id>` (LoRA). */
  root?: string;
}

export type ErrorFormat = 'envelope' | 'flat';

export interface SimulatorOptions {
  /** 0 (default) = a free port. */
  port?: number;
  host?: string;
  models?: SimulatedModel[];
  apiKey?: string | null;
  timeToFirstTokenMs?: number;
  interTokenMs?: number;
  /** 0.2 = each delay varies uniformly within ±20 %. */
  jitterRatio?: number;
  /** Like vLLM's --max-num-seqs. */
  maxRunning?: number;
  /** Like vLLM's --max-num-queued-reqs: 503 once this many requests wait; null = unbounded. */
  maxQueued?: number | null;
  /** Fixed `created` timestamp (seconds) for byte-exact transcripts. */
  created?: number;
  version?: string;
  errorFormat?: ErrorFormat;
  fault?: SimulatorFault | null;
  healthy?: boolean;
  healthDelayMs?: number;
  /** How many received requests `received` keeps. */
  receivedLimit?: number;
  /** How long an idle keep-alive connection stays open (uvicorn's default, and vLLM's: 5 s). */
  keepAliveMs?: number;
}

/** What `simulator.update()` can change while it runs. */
export type SimulatorUpdate = Pick<
  SimulatorOptions,
  'timeToFirstTokenMs' | 'interTokenMs' | 'jitterRatio' | 'healthDelayMs' | 'maxRunning' | 'maxQueued'
>;

/** The live, mutable settings the request handlers read on every request. */
export interface SimulatorSettings {
  apiKey: string | null;
  timeToFirstTokenMs: number;
  interTokenMs: number;
  jitterRatio: number;
  created: number | null;
  version: string;
  errorFormat: ErrorFormat;
  fault: SimulatorFault | null;
  /** Requests the fault still applies to; null: every one until it is cleared. */
  faultUsesLeft: number | null;
  healthy: boolean;
  healthDelayMs: number;
}

export const DEFAULT_MODEL: SimulatedModel = { id: 'sim-llama-3-8b', maxModelLen: 8192 };
export const DEFAULT_MAX_RUNNING = 256;
export const DEFAULT_RECEIVED_LIMIT = 200;
export const DEFAULT_VERSION = '0.11.0';
export const DEFAULT_KEEP_ALIVE_MS = 5000;

export function createSettings(options: SimulatorOptions): SimulatorSettings {
  return {
    apiKey: options.apiKey ?? null,
    timeToFirstTokenMs: nonNegative(options.timeToFirstTokenMs ?? 0),
    interTokenMs: nonNegative(options.interTokenMs ?? 0),
    jitterRatio: Math.min(1, nonNegative(options.jitterRatio ?? 0)),
    created: options.created ?? null,
    version: options.version ?? DEFAULT_VERSION,
    errorFormat: options.errorFormat ?? 'envelope',
    fault: options.fault ?? null,
    faultUsesLeft: null,
    healthy: options.healthy ?? true,
    healthDelayMs: nonNegative(options.healthDelayMs ?? 0),
  };
}

function nonNegative(value: number): number {
  return Number.isFinite(value) && value > 0 ? value : 0;
}
