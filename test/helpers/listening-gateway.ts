// A gateway listening on a free port with a vLLM simulator as its upstream: the starting point of
// every test that needs a real socket (streams, disconnects, limits over HTTP).
import type { App } from '../../src/app.js';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/sim/index.js';
import { relaxedAuthLimits } from './auth-client.js';
import type { Backend } from './environment.js';
import { createTestApp, type TestApp } from './test-app.js';

/** A fixed `created` makes the simulator's answers byte-for-byte repeatable. */
export const SIM_CREATED = 1760000000;

export interface ListeningGateway {
  simulator: Simulator;
  testApp: TestApp;
  app: App;
  /** `http://127.0.0.1:<port>` of the listening gateway. */
  url: string;
  close(): Promise<void>;
}

/**
 * Starts a gateway whose VLLM_BASE_URL is a simulator: a new one (from `simulatorOptions`) that
 * close() stops, or `simulator`, which stays the caller's. Auth limits are relaxed so sign-ups
 * never get in the way; `environment` goes on top.
 */
export async function startListeningGateway(options: {
  backend: Backend;
  environment?: Record<string, string>;
  simulatorOptions?: SimulatorOptions | undefined;
  simulator?: Simulator | undefined;
  /** A second instance on the first one's database, Redis prefix and JWT secret. */
  sharing?: TestApp | undefined;
  captureLogs?: boolean | undefined;
}): Promise<ListeningGateway> {
  const ownSimulator = options.simulator === undefined;
  const simulator = options.simulator ?? (await startSimulator({ created: SIM_CREATED, ...options.simulatorOptions }));
  let testApp: TestApp;
  try {
    testApp = await createTestApp({
      backend: options.backend,
      environment: { ...relaxedAuthLimits, VLLM_BASE_URL: simulator.url, ...options.environment },
      ...(options.sharing === undefined ? {} : { sharing: options.sharing }),
      ...(options.captureLogs === undefined ? {} : { captureLogs: options.captureLogs }),
    });
  } catch (error) {
    if (ownSimulator) await simulator.close();
    throw error;
  }
  const url = await testApp.app.listen({ port: 0, host: '127.0.0.1' });
  return {
    simulator,
    testApp,
    app: testApp.app,
    url,
    async close() {
      await testApp.close();
      if (ownSimulator) await simulator.close();
    },
  };
}
