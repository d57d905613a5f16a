// Starts a simulator: builds its shared state, listens, and hands back the in-process API that tests
// and benchmarks use to inspect and steer it.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SimulatorFault } from './faults.js';
import { SimulatorMetrics, type FinishedReason } from './metrics.js';
import { createModelRegistry } from './models.js';
import { DEFAULT_KEEP_ALIVE_MS, DEFAULT_MAX_RUNNING, DEFAULT_RECEIVED_LIMIT, createSettings, type SimulatorOptions, type SimulatorUpdate } from './options.js';
import { ReceivedLog, type ReceivedRequest } from './received-log.js';
import type { SimulatorRuntime } from './runtime.js';
import { Scheduler } from './scheduler.js';
import { closeIdleConnections } from './keep-alive.js';
import { createRequestListener } from './server.js';

export interface SimulatorStats {
  running: number;
  waiting: number;
  finished: Record<FinishedReason, number>;
  /** Requests received since start (any path), including those `clearReceived` dropped. */
  received: number;
  /** Connections accepted since start. */
  connections: number;
}

export interface Simulator {
  url: string;
  port: number;
  /** Stops listening and destroys open sockets (running requests count as aborted). */
  close(): Promise<void>;
  stats(): SimulatorStats;
  /** Resolves once `predicate(stats)` holds; rejects after `timeoutMs` (default 5000). */
  waitForStats(predicate: (stats: SimulatorStats) => boolean, timeoutMs?: number): Promise<SimulatorStats>;
  /** The last `receivedLimit` requests, oldest first. */
  readonly received: ReceivedRequest[];
  clearReceived(): void;
  /** A fault for every request from now on (faults apply to), or only the next `times` of them. */
  setFault(fault: SimulatorFault | null, options?: { times?: number }): void;
  setHealthy(healthy: boolean): void;
  update(options: SimulatorUpdate): void;
}

export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const settings = createSettings(options);
  const models = createModelRegistry(options.models);
  let maxRunning = Math.max(1, options.maxRunning ?? DEFAULT_MAX_RUNNING);
  const scheduler = new Scheduler(maxRunning, options.maxQueued ?? null);
  const activityListeners = new Set<() => void>();
  const runtime: SimulatorRuntime = {
    settings,
    models,
    scheduler,
    metrics: new SimulatorMetrics(models.baseModelIds, () => maxRunning),
    received: new ReceivedLog(options.receivedLimit ?? DEFAULT_RECEIVED_LIMIT),
    finished: { stop: 0, length: 0, abort: 0, error: 0 },
    onActivity: () => {
      for (const listener of activityListeners) listener();
    },
  };

  const server = createServer(createRequestListener(runtime));
  // Long streams must not be cut by Node's request timeout.
  server.requestTimeout = 0;
  closeIdleConnections(server, options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS);
  let connections = 0;
  server.on('connection', () => (connections += 1));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: options.port ?? 0, host: options.host ?? '127.0.0.1', backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  const stats = (): SimulatorStats => ({
    running: scheduler.running,
    waiting: scheduler.waiting,
    finished: { ...runtime.finished },
    received: runtime.received.total,
    connections,
  });

  return {
    url: `http://${urlHost}:${address.port}`,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    stats,
    waitForStats: (predicate, timeoutMs = 5000) =>
      new Promise<SimulatorStats>((resolve, reject) => {
        const check = (): void => {
          const current = stats();
          if (!predicate(current)) return;
          cleanUp();
          resolve(current);
        };
        const timer = setTimeout(() => {
          cleanUp();
          reject(new Error(`simulator: stats condition not met within ${timeoutMs} ms: ${JSON.stringify(stats())}`));
        }, timeoutMs);
        const cleanUp = (): void => {
          clearTimeout(timer);
          activityListeners.delete(check);
        };
        activityListeners.add(check);
        check();
      }),
    get received() {
      return runtime.received.snapshot();
    },
    clearReceived: () => runtime.received.clear(),
    setFault: (fault, faultOptions) => {
      const times = faultOptions?.times ?? null;
      // A fault for no request at all is no fault.
      settings.fault = times !== null && times < 1 ? null : fault;
      settings.faultUsesLeft = settings.fault === null ? null : times;
    },
    setHealthy: (healthy) => {
      settings.healthy = healthy;
    },
    update: (timing) => {
      const fresh = createSettings({ ...currentTiming(), ...timing });
      settings.timeToFirstTokenMs = fresh.timeToFirstTokenMs;
      settings.interTokenMs = fresh.interTokenMs;
      settings.jitterRatio = fresh.jitterRatio;
      settings.healthDelayMs = fresh.healthDelayMs;
      if (timing.maxRunning !== undefined) maxRunning = Math.max(1, timing.maxRunning);
      scheduler.setLimits({ maxRunning, ...(timing.maxQueued !== undefined ? { maxQueued: timing.maxQueued } : {}) });
    },
  };

  function currentTiming(): SimulatorUpdate {
    return {
      timeToFirstTokenMs: settings.timeToFirstTokenMs,
      interTokenMs: settings.interTokenMs,
      jitterRatio: settings.jitterRatio,
      healthDelayMs: settings.healthDelayMs,
    };
  }
}
