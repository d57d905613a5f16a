// The real process: `src/main.ts` started as `npm start` would, stopped with signals.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/sim/index.js';


interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
}

function run(environment: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', DATABASE_URL: 'memory://', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', JWT_SECRET: randomBytes(32).toString('hex'), ...environment },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

async function start(environment: Record<string, string>): Promise<Started> {
  const child = run(environment);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const match = /"url":"(http:\/\/[^"]+)"[^\n]*gateway listening/.exec(output);
    if (match?.[1] !== undefined) return { child, url: match[1], output: () => output };
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`gateway did not start:\n${output}`);
}

async function exitCode(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const [code] = (await once(child, 'exit')) as [number | null];
  return code;
}

describe('the gateway process', () => {
  let simulator: Simulator;
  beforeAll(async () => {
    simulator = await startSimulator({ healthDelayMs: 1500 });
  });
  afterAll(async () => {
    await simulator.close();
  });

  it('stops with one clear line naming a bad variable', async () => {
    const child = run({ PORT: 'eighty' });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    expect(await exitCode(child)).toBe(1);
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/PORT must be an integer/);
  });

  it('finishes in-flight requests on SIGTERM, refuses new ones, and exits 0', async () => {
    const gateway = await start({ VLLM_BASE_URL: simulator.url, SHUTDOWN_TIMEOUT_MS: '10000', VLLM_HEALTH_TIMEOUT_MS: '5000' });
    // /health waits ~1.5 s on the simulator's slow /health: a request in flight during shutdown.
    const inFlight = fetch(`${gateway.url}/health`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    gateway.child.kill('SIGTERM');
    const response = await inFlight;
    expect(response.status).toBe(200);
    expect(((await response.json()) as { status: string }).status).toBe('ok');
    expect(await exitCode(gateway.child)).toBe(0);
    await expect(fetch(`${gateway.url}/health/live`)).rejects.toThrow();
    expect(gateway.output()).toContain('shutting down');
  });

  it('has written every log line when it exits, asynchronous (the default) or not', async () => {
    // Asynchronous: the log's reader stalls while 1,000 access lines (~250 KB, more than a pipe and
    // the reader's buffer hold) are made, so lines are still held in the gateway when it is told to
    // stop; they must be written on the way out. Synchronous: a stalled reader would stall the
    // gateway itself, so it reads throughout.
    for (const { logSync, requests } of [
      { logSync: 'false', requests: 1000 },
      { logSync: 'true', requests: 300 },
    ]) {
      const gateway = await start({ VLLM_BASE_URL: simulator.url, LOG_SYNC: logSync });
      if (logSync === 'false') gateway.child.stdout?.pause();
      for (let sent = 0; sent < requests; sent += 50) {
        await Promise.all(Array.from({ length: 50 }, async () => (await fetch(`${gateway.url}/health/live`)).arrayBuffer()));
      }
      gateway.child.kill('SIGTERM');
      gateway.child.stdout?.resume();
      expect(await exitCode(gateway.child)).toBe(0);
      const lines = gateway.output().split('\n');
      const accessLines = lines.filter((line) => line.includes('"route":"/health/live"') && line.includes('request completed'));
      expect(accessLines, `LOG_SYNC=${logSync}`).toHaveLength(requests);
      for (const line of accessLines) expect(JSON.parse(line)).toMatchObject({ status: 200, msg: 'request completed' });
      expect(lines.filter((line) => line !== '').at(-1)).toContain('"msg":"stopped"');
    }
  });

  it('cuts what remains at the shutdown deadline and exits 1', async () => {
    const slowSimulator = await startSimulator({ healthDelayMs: 8000 });
    const gateway = await start({ VLLM_BASE_URL: slowSimulator.url, SHUTDOWN_TIMEOUT_MS: '200', VLLM_HEALTH_TIMEOUT_MS: '10000' });
    const inFlight = fetch(`${gateway.url}/health`).then(
      (response) => response.status,
      () => 'cut',
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const stoppedAt = Date.now();
    gateway.child.kill('SIGTERM');
    expect(await exitCode(gateway.child)).toBe(1);
    // The request would have taken 8 s: the process must not wait for it.
    expect(Date.now() - stoppedAt).toBeLessThan(4000);
    expect(await inFlight).toBe('cut');
    expect(gateway.output()).toContain('shutdown deadline reached');
    await slowSimulator.close();
  });
});
