// Keep-alive as uvicorn (and so vLLM) does it: connections are reused, idle ones are closed after
// the server's timeout, and that timeout is never announced (no Keep-Alive header), so a client
// cannot learn it from the answer and must keep its own idle timeout shorter.
import { request, Agent, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/sim/index.js';

const KEEP_ALIVE_MS = 300;

describe('simulator keep-alive', () => {
  let simulator: Simulator;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });

  beforeAll(async () => {
    simulator = await startSimulator({ keepAliveMs: KEEP_ALIVE_MS });
  });

  afterAll(async () => {
    agent.destroy();
    await simulator.close();
  });

  function getModels(): Promise<{ response: IncomingMessage; socket: Socket }> {
    return new Promise((resolve, reject) => {
      const outgoing = request(`${simulator.url}/v1/models`, { agent }, (response) => {
        response.resume();
        response.once('end', () => resolve({ response, socket: outgoing.socket as Socket }));
      });
      outgoing.once('error', reject);
      outgoing.end();
    });
  }

  it('keeps a connection for the next request without announcing its idle timeout', async () => {
    const first = await getModels();
    const second = await getModels();
    expect(second.socket).toBe(first.socket);
    expect(first.response.headers['keep-alive']).toBeUndefined();
  });

  it('closes a connection left idle for its keep-alive timeout', async () => {
    const { socket } = await getModels();
    const idleSince = performance.now();
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const idleMs = performance.now() - idleSince;
    expect(idleMs).toBeGreaterThanOrEqual(KEEP_ALIVE_MS - 50);
    // Node's own keep-alive would wait a second longer than it says.
    expect(idleMs).toBeLessThan(KEEP_ALIVE_MS + 700);
    const connectionsBefore = simulator.stats().connections;
    await getModels();
    expect(simulator.stats().connections).toBe(connectionsBefore + 1);
  });
});
