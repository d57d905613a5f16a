// `npm run dev`: the gateway with embedded defaults (PGlite in ./data, the in-process store) and,
// unless VLLM_BASE_URL is set, the vLLM simulator as its upstream. Prints where everything is.
import { ConfigError, parseConfig, readEnvironment } from './config.js';
import { resolveJwtSecret } from './platform/jwt-secret.js';
import { startServer } from './server.js';
import { startSimulator, type Simulator } from './sim/index.js';

async function main(): Promise<void> {
  const environment = readEnvironment({ processEnvironment: process.env });
  let config;
  try {
    config = resolveJwtSecret(parseConfig({ NODE_ENV: 'development', ...environment }).config);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }

  let simulator: Simulator | null = null;
  if (environment.VLLM_BASE_URL === undefined || environment.VLLM_BASE_URL.trim() === '') {
    simulator = await startSimulator({
      port: Number(environment.SIM_PORT ?? 8000),
      apiKey: config.vllm.apiKey,
      // Realistic pacing, so streaming in the browser looks like a real model.
      timeToFirstTokenMs: 150,
      interTokenMs: 25,
      jitterRatio: 0.2,
    });
    config = { ...config, vllm: { ...config.vllm, baseUrls: [simulator.url] } };
  }

  const server = await startServer({ config });
  const database = config.database.url === null ? `PGlite in ${config.dataDirectory}/pglite` : config.database.url === 'memory://' ? 'PGlite in memory' : 'PostgreSQL (DATABASE_URL)';
  const store = config.redis.url === null ? 'in-process store (single instance)' : 'Redis (REDIS_URL)';
  // The banner is for the person at the terminal, not a log line.
  process.stdout.write(
    `${[
      '',
      `  vLLM Chat Gateway (development) listening on ${server.url}`,
      `  upstream:  ${simulator === null ? config.vllm.baseUrls.join(', ') : `vLLM simulator at ${simulator.url}`}`,
      `  database:  ${database}`,
      `  store:     ${store}`,
      config.http.docsEnabled ? `  API docs:  ${server.url}/docs` : '',
      '',
      '  Try:',
      `    curl -s ${server.url}/health`,
      `    curl -s ${server.url}/api/auth/register -H 'content-type: application/json' -d '{"email":"me@example.com","password":"a long passphrase"}'`,
      `    TOKEN=$(curl -s ${server.url}/api/auth/login -H 'content-type: application/json' -d '{"email":"me@example.com","password":"a long passphrase"}' | sed 's/.*"access_token":"\\([^"]*\\)".*/\\1/')`,
      `    curl -N ${server.url}/api/chat -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"messages":[{"role":"user","content":"Hello"}]}'`,
      '',
    ]
      .filter((line, index, lines) => line !== '' || lines[index - 1] !== '')
      .join('\n')}\n`,
  );

  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    void server
      .shutdown(signal)
      .then(async (clean) => {
        await simulator?.close();
        process.exit(clean ? 0 : 1);
      });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

main().catch((error: unknown) => {
  process.stderr.write(`The development gateway could not start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
