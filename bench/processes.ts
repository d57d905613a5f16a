// Starts the processes a benchmark measures, each in its own Node process as in production: the
// vLLM simulator, the gateway (built, `node dist/src/main.js`), and a minimal undici pass-through
// proxy as the floor to beat. The load generator is the benchmark process itself.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';

export interface Started {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

const root = new URL('..', import.meta.url).pathname;

/**
 * Starts a process and resolves once it is ready: when its output matches `ready` (the URL is the
 * first group), or when `ready.probe` answers `/health/live` (the URL is the probe's) — for a
 * gateway started with a log level that hides its "listening" line.
 */
function startProcess(input: { args: string[]; env: Record<string, string>; ready: RegExp | { probe: string }; name: string }): Promise<Started> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, input.args, { cwd: root, env: { PATH: process.env.PATH ?? '', ...input.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let settled = false;
    const collect = (chunk: Buffer) => (output += chunk.toString());
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${input.name} did not start:\n${output}`));
    }, 30_000);
    const ready = (url: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', collect);
      child.stdout?.resume();
      child.stderr?.resume();
      resolve({
        url,
        pid: child.pid ?? 0,
        stop: () =>
          new Promise((done) => {
            if (child.exitCode !== null) return done();
            child.once('exit', () => done());
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), 5000).unref();
          }),
      });
    };
    const onData = (chunk: Buffer) => {
      collect(chunk);
      if (!(input.ready instanceof RegExp)) return;
      const match = input.ready.exec(output);
      if (match?.[1] !== undefined) ready(match[1]);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', collect);
    child.once('exit', (code) => {
      settled = true;
      clearTimeout(timer);
      reject(new Error(`${input.name} exited with ${code}:\n${output}`));
    });
    if (!(input.ready instanceof RegExp)) {
      const probe = input.ready.probe;
      const poll = () => {
        if (settled) return;
        fetch(`${probe}/health/live`).then(
          (response) => (response.ok ? ready(probe) : setTimeout(poll, 100)),
          () => setTimeout(poll, 100),
        );
      };
      poll();
    }
  });
}

/** A port free on 127.0.0.1 now, for a process that must be reachable before it says where it listens. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export function startSimulator(options: { port: number; ttftMs: number; itlMs: number }): Promise<Started> {
  return startProcess({
    name: 'simulator',
    args: ['--import', 'tsx', 'src/sim/cli.ts', '--port', String(options.port), '--ttft-ms', String(options.ttftMs), '--itl-ms', String(options.itlMs), '--max-running', '100000'],
    env: {},
    ready: /listening on (http:\/\/[^\s]+)/,
  });
}

/**
 * BENCH_GATEWAY_ENV="NAME=value NAME=value": variables for every gateway the suite starts, to
 * measure a setting (LIMITS_OVERLAP_ADMISSION=true) against the same baselines.
 */
function gatewayEnvironmentFromBench(): Record<string, string> {
  const pairs = (process.env.BENCH_GATEWAY_ENV ?? '').split(/\s+/).filter((pair) => pair.includes('='));
  return Object.fromEntries(pairs.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
}

export async function startGateway(options: {
  port: number;
  vllmUrl: string;
  databaseUrl: string | null;
  redisUrl: string | null;
  profileDirectory?: string;
  /** Variables set on top (a variant compared in one run: another LOG_LEVEL, a built tree elsewhere). */
  environment?: Record<string, string>;
  /** The built gateway to run, relative to the repository or absolute (another checkout's, for a before/after). */
  entry?: string;
}): Promise<Started> {
  // A port chosen here and a readiness probe, not the "listening" log line: a variant may run with
  // a log level that hides it.
  const port = options.port === 0 ? await freePort() : options.port;
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(port),
    JWT_SECRET: randomBytes(32).toString('hex'),
    VLLM_BASE_URL: options.vllmUrl,
    AUTO_MIGRATE: 'true',
    // The full pipeline: one access-log line per request, as in production.
    LOG_LEVEL: 'info',
    DATABASE_URL: options.databaseUrl ?? 'memory://',
    // Limits stay on (they are part of the pipeline measured) but high enough not to refuse the load.
    RATE_LIMIT_REQUESTS: '100000000',
    RATE_LIMIT_IP_REQUESTS: '100000000',
    RATE_LIMIT_AUTH_REQUESTS: '100000000',
    MAX_CONCURRENT_STREAMS: '10000',
    MAX_TOKENS_CAP: '100000',
    ADMIN_EMAIL: 'bench@example.com',
    ADMIN_PASSWORD: 'a-long-benchmark-password',
  };
  if (options.redisUrl !== null) {
    env.REDIS_URL = options.redisUrl;
    env.REDIS_KEY_PREFIX = `bench-${randomBytes(4).toString('hex')}:`;
  }
  if (options.databaseUrl !== null) env.DATABASE_SCHEMA = `bench_${randomBytes(4).toString('hex')}`;
  Object.assign(env, gatewayEnvironmentFromBench(), options.environment);
  // A CPU profile, written when the gateway exits (bench/profile.ts).
  const profile = options.profileDirectory === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', options.profileDirectory];
  return startProcess({ name: 'gateway', args: [...profile, options.entry ?? 'dist/src/main.js'], env, ready: { probe: `http://127.0.0.1:${port}` } });
}

export function startMinimalProxy(options: { port: number; upstreamUrl: string; environment?: Record<string, string> }): Promise<Started> {
  return startProcess({
    name: 'minimal proxy',
    args: ['--import', 'tsx', 'bench/minimal-proxy.ts'],
    env: { ...options.environment, PORT: String(options.port), UPSTREAM_URL: options.upstreamUrl },
    ready: /listening on (http:\/\/[^\s]+)/,
  });
}

/** Resident memory of a process, in bytes (Linux /proc). */
export function residentBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kilobytes = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kilobytes * 1024;
}

/** CPU time a process has used so far (user + system), in milliseconds (Linux /proc; 10 ms ticks). */
export function cpuMilliseconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // After the last ')': the command name before it may hold spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime, fields 14 and 15 of stat; counted from the state field (3) here.
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) * 10;
}

/**
 * CPU time used so far by every process named `name` here (`redis-server`, `postgres`: services
 * the gateway leans on, which share the machine's cores with it), in milliseconds; 0 when none runs.
 */
export function serviceCpuMilliseconds(name: string): number {
  let pids: number[];
  try {
    pids = execFileSync('pgrep', ['-x', name], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    // pgrep exits 1 when no process has that name.
    return 0;
  }
  let total = 0;
  for (const pid of pids) {
    try {
      total += cpuMilliseconds(pid);
    } catch {
      // Gone between pgrep and the read (a PostgreSQL backend that ended).
    }
  }
  return total;
}

async function json<T>(url: string, init: { method?: string; body?: unknown; token?: string }): Promise<T> {
  const response = await fetch(url, {
    method: init.method ?? 'GET',
    headers: { 'content-type': 'application/json', ...(init.token === undefined ? {} : { authorization: `Bearer ${init.token}` }) },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  if (!response.ok) throw new Error(`${url} answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as T;
}

/** Logs in as the benchmark's administrator (startGateway creates it) and makes an API key. */
export async function createBenchCredentials(gatewayUrl: string): Promise<{ accessToken: string; apiKey: string }> {
  const login = await json<{ access_token: string }>(`${gatewayUrl}/api/auth/login`, { method: 'POST', body: { email: 'bench@example.com', password: 'a-long-benchmark-password' } });
  const key = await json<{ key: string }>(`${gatewayUrl}/api/keys`, { method: 'POST', body: { name: 'bench' }, token: login.access_token });
  return { accessToken: login.access_token, apiKey: key.key };
}
