// The state one running simulator shares between its request handlers and its in-process API.
import type { FinishedReason, SimulatorMetrics } from './metrics.js';
import type { ModelRegistry } from './models.js';
import type { SimulatorSettings } from './options.js';
import type { ReceivedLog } from './received-log.js';
import type { Scheduler } from './scheduler.js';

export interface SimulatorRuntime {
  settings: SimulatorSettings;
  models: ModelRegistry;
  scheduler: Scheduler;
  metrics: SimulatorMetrics;
  received: ReceivedLog;
  finished: Record<FinishedReason, number>;
  /** Called whenever a request is queued, starts or finishes (drives `waitForStats`). */
  onActivity: () => void;
}
